"""The sign-in throttle shared by every server: one Lua script, one round trip per decision.

`MemorySignInThrottle`'s sliding logs (store/memory_signin_throttle.py), each a sorted set
`<prefix><key>` of ticket -> failure time, trimmed to the newest `limit` and expiring `window`
after the last failure. A script checks all three keys and counts the attempt in each, which
Redis runs atomically: nodes deciding for one username at once are serialised, so the allowance
is one for the deployment, and it survives a restart of any node. The caller's clock is used
(as redis_windows.py does): node clocks a few seconds apart move a 5-minute window by as much.

Redis unreachable: sign-in does not stop for everyone. The decision falls back to this process's
memory (one allowance per node, as before Redis) and says so in the log once; it returns to
Redis by itself. An attempt is taken back where it was counted.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import structlog
from redis.asyncio import Redis

from tokenward.core.throttle import Attempt, SignInLimits, seconds, throttle_keys
from tokenward.store.errors import STORAGE_ERRORS
from tokenward.store.memory_signin_throttle import MemorySignInThrottle

log = structlog.get_logger(__name__)

# KEYS: pair, ip, user. ARGV: now, ticket, then failures and window (seconds) for each key.
# Returns the wait in seconds as a string ("%.6f"), "0" when the attempt was counted.
ATTEMPT = """
local now, ticket = tonumber(ARGV[1]), ARGV[2]
local wait = 0
for i = 1, 3 do
  local limit, window = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= limit then
    local nth = redis.call('ZRANGE', KEYS[i], -limit, -limit, 'WITHSCORES')
    local w = tonumber(nth[2]) + window - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return string.format('%.6f', wait) end
for i = 1, 3 do
  local limit, window = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  redis.call('ZADD', KEYS[i], now, ticket)
  redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -(limit + 1))
  redis.call('PEXPIRE', KEYS[i], math.ceil(window * 1000))
end
return '0'
"""

# KEYS: pair, ip, user. ARGV: ticket, "1" to forget the pair's every failure.
FORGIVE = """
if ARGV[2] == '1' then redis.call('DEL', KEYS[1]) else redis.call('ZREM', KEYS[1], ARGV[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""


class RedisSignInThrottle:
    """`SignInThrottle` on Redis; `fallback` decides while Redis is unreachable."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        fallback: MemorySignInThrottle,
        limits: SignInLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._prefix = prefix
        self._fallback = fallback
        limits = limits or SignInLimits()
        self._limits = [
            str(value)
            for limit in (limits.pair, limits.ip, limits.user)
            for value in (limit.failures, limit.window)
        ]
        self._clock = clock
        self._attempt = redis.register_script(ATTEMPT)
        self._forgive = redis.register_script(FORGIVE)
        self._degraded = False

    async def attempt(self, username: str, ip: str) -> Attempt:
        ticket = secrets.token_hex(8)
        try:
            reply = await self._attempt(
                keys=self._keys(username, ip), args=[repr(self._clock()), ticket, *self._limits]
            )
        except STORAGE_ERRORS as exc:
            self._degrade(exc)
            return self._fallback.attempt_now(username, ip)
        self._recovered()
        wait = float(reply)
        if wait > 0:
            return Attempt(username, ip, "", seconds(wait))
        return Attempt(username, ip, ticket)

    async def forgive(self, attempt: Attempt) -> None:
        await self._take_back(attempt, clear_pair=False)

    async def succeeded(self, attempt: Attempt) -> None:
        await self._take_back(attempt, clear_pair=True)

    async def _take_back(self, attempt: Attempt, *, clear_pair: bool) -> None:
        if attempt.wait is not None:
            return
        if not attempt.shared:
            self._fallback.forgive_now(attempt, clear_pair=clear_pair)
            return
        try:
            await self._forgive(
                keys=self._keys(attempt.username, attempt.ip),
                args=[attempt.ticket, "1" if clear_pair else "0"],
            )
        except STORAGE_ERRORS as exc:
            # The sign-in succeeds regardless; the attempt stays counted until its window ends.
            self._degrade(exc)

    def _keys(self, username: str, ip: str) -> list[str]:
        return [self._prefix + key for key in throttle_keys(username, ip)]

    def _degrade(self, error: Exception) -> None:
        if not self._degraded:
            log.warning("signin_throttle_shared_store_unavailable", error=type(error).__name__)
            self._degraded = True

    def _recovered(self) -> None:
        if self._degraded:
            log.info("signin_throttle_shared_store_recovered")
            self._degraded = False
