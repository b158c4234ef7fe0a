"""GCRA rate limits shared by every gateway: one Lua script, one round trip per decision.

The state is the memory backend's (one theoretical arrival time per key, see
`tokenward.gateway.ratelimit`), held in one Redis string and read-modified-written by a script,
which Redis runs atomically: two gateways deciding for the same key at once are serialised, so
a limit of L admits exactly L across all of them. Time is Redis's own (`TIME`), so the nodes'
clock skew does not move anyone's quota; the key expires once its debt is paid.
"""

from __future__ import annotations

from redis.asyncio import Redis

from tokenward.core.ratelimits import RateDecision, RatePolicy

PREFIX = "tokenward:ratelimit:"

# KEYS[1] the key; ARGV: emission interval T and window `per` (seconds, as strings).
# Returns {allowed, remaining-window (tat - now after the decision), retry_after} as strings:
# Lua numbers would be truncated to integers on the way out.
GCRA = """
local interval = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > per + interval * 1e-6 then
  return {'0', string.format('%.6f', tat - now), string.format('%.6f', new_tat - now - per)}
end
local debt = new_tat - now
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', math.ceil(debt * 1000) + 1)
return {'1', string.format('%.6f', debt), '0'}
"""


class RedisRateLimiter:
    """The gateway's `RateLimiter` Protocol on Redis. `now` is ignored: Redis's clock rules."""

    def __init__(self, redis: Redis, prefix: str = PREFIX, *, owns_client: bool = False) -> None:
        """`prefix`: one per deployment sharing a Redis. `owns_client`: `stop()` closes it."""
        self._redis = redis
        self._prefix = prefix
        self._owns_client = owns_client
        self._script = redis.register_script(GCRA)

    async def acquire(self, key: str, policy: RatePolicy, now: float) -> RateDecision:
        interval = policy.per / policy.requests  # emission interval T
        reply = await self._script(
            keys=[self._prefix + key], args=[repr(interval), repr(float(policy.per))]
        )
        allowed, debt, retry = (float(value) for value in reply)
        if not allowed:
            return RateDecision(False, 0, debt, retry)
        remaining = int((policy.per - debt) / interval + 1e-9)
        return RateDecision(True, remaining, debt, 0.0)

    # Lifespan hooks (the gateway's `background`): the client connects on first use.
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        if self._owns_client:
            await self._redis.aclose()
