"""GCRA rate limits shared by every gateway: one Lua script per lease of K requests.

The state is the memory backend's (one theoretical arrival time per key, see
`tokenward.gateway.ratelimit`), held in one Redis string and read-modified-written by a script,
which Redis runs atomically: two gateways deciding for the same key at once are serialised.
Time is Redis's own (`TIME`), so the nodes' clock skew does not move anyone's quota; the key
expires once its debt is paid.

The script grants up to K requests at once (a lease, `store.rate_leases`): with K = 1, which
every rarely used key and every limit below 200 requests has, a limit of L admits exactly L
across all processes, one round trip per request; a busy key's process spends its lease from
memory, within the bound documented there (at most 1 % of the limit per process).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from redis.asyncio import Redis

from tokenward.core.ratelimits import RateDecision, RatePolicy
from tokenward.store.rate_leases import LeaseTable

PREFIX = "tokenward:ratelimit:"

# KEYS[1] the key; ARGV: emission interval T and window `per` (seconds, as strings), the
# requests wanted K ≥ 1 and the requests given back (an expired lease's unspent ones).
# Returns {granted, remaining-window (tat - now after the decision), retry_after} as strings:
# Lua numbers would be truncated to integers on the way out.
GCRA = """
local interval = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local returned = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') - returned * interval
if tat < now then tat = now end
local room = math.floor((per - (tat - now)) / interval + 1e-6)
if room < 1 then
  local new_tat = tat + interval
  if returned > 0 then
    redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', math.ceil((tat - now) * 1000) + 1)
  end
  return {'0', string.format('%.6f', tat - now), string.format('%.6f', new_tat - now - per)}
end
local granted = math.min(wanted, room)
local debt = tat + granted * interval - now
redis.call('SET', KEYS[1], string.format('%.6f', now + debt), 'PX', math.ceil(debt * 1000) + 1)
return {tostring(granted), string.format('%.6f', debt), '0'}
"""


class RedisRateLimiter:
    """The gateway's `RateLimiter` Protocol on Redis. `now` is ignored: Redis's clock rules
    the bucket, this process's monotonic clock its leases."""

    def __init__(
        self,
        redis: Redis,
        prefix: str = PREFIX,
        *,
        owns_client: bool = False,
        leases: LeaseTable | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`prefix`: one per deployment sharing a Redis. `owns_client`: `stop()` closes it."""
        self._redis = redis
        self._prefix = prefix
        self._owns_client = owns_client
        self._script = redis.register_script(GCRA)
        self._leases = leases if leases is not None else LeaseTable()
        self._clock = clock
        # One round trip in flight per key: the requests arriving meanwhile wait for its lease.
        self._asking: dict[str, asyncio.Task[RateDecision | None]] = {}

    async def acquire(self, key: str, policy: RatePolicy, now: float) -> RateDecision:
        leases = self._leases
        while True:
            decision = leases.spend(key, self._clock())
            if decision is not None:
                return decision
            task = self._asking.get(key)
            if task is None:
                task = asyncio.ensure_future(self._ask(key, policy))
                task.add_done_callback(_retrieve)
                self._asking[key] = task
            # Shielded: a waiter whose client went away must not cancel the others' answer.
            refusal = await asyncio.shield(task)
            if refusal is not None:
                return refusal

    async def _ask(self, key: str, policy: RatePolicy) -> RateDecision | None:
        """One lease from the bucket into the table; a refusal is returned (and remembered)."""
        try:
            interval = policy.per / policy.requests  # emission interval T
            size, returned = self._leases.request(key, policy, self._clock())
            reply = await self._script(
                keys=[self._prefix + key],
                args=[repr(interval), repr(float(policy.per)), size, returned],
            )
            granted, debt, retry = (float(value) for value in reply)
            now = self._clock()
            if not granted:
                self._leases.refused(key, debt, retry, now)
                return RateDecision(False, 0, debt, retry)
            remaining = int((policy.per - debt) / interval + 1e-9)
            self._leases.granted(key, int(granted), remaining, debt, now)
            return None
        finally:
            self._asking.pop(key, None)

    # Lifespan hooks (the gateway's `background`): the client connects on first use.
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        if self._owns_client:
            await self._redis.aclose()


def _retrieve(task: asyncio.Task[RateDecision | None]) -> None:
    """Every waiter may have gone (clients that disconnected): the error is theirs, not the
    loop's to log as never retrieved."""
    if not task.cancelled():
        task.exception()
