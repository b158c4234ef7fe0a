"""`SignInThrottle` in this process: one allowance per node, reset by a restart."""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable

from tokenward.core.throttle import Attempt, Limit, SignInLimits, seconds, throttle_keys

MAX_KEYS = 100_000


class FailureLog:
    """Failure times (each with its ticket) per key, the newest `limit` kept."""

    def __init__(self, limit: Limit, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._clock = clock
        self._failures: dict[str, deque[tuple[float, str]]] = {}

    def retry_after(self, key: str) -> float | None:
        """Seconds to wait before trying again, or None when allowed now."""
        failures = self._recent(key)
        if failures is None or len(failures) < self._limit.failures:
            return None
        return failures[0][0] + self._limit.window - self._clock()

    def failed(self, key: str, ticket: str) -> None:
        if len(self._failures) >= MAX_KEYS:
            self._failures = {k: v for k, v in self._failures.items() if self._recent(k)}
        failures = self._failures.setdefault(key, deque(maxlen=self._limit.failures))
        failures.append((self._clock(), ticket))

    def forget(self, key: str, ticket: str | None = None) -> None:
        """One failure (by ticket), or all of the key's."""
        failures = self._failures.get(key)
        if failures is None:
            return
        if ticket is None:
            del self._failures[key]
            return
        kept = deque((entry for entry in failures if entry[1] != ticket), maxlen=failures.maxlen)
        self._failures[key] = kept

    def _recent(self, key: str) -> deque[tuple[float, str]] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        cutoff = self._clock() - self._limit.window
        while failures and failures[0][0] <= cutoff:
            failures.popleft()
        return failures


class MemorySignInThrottle:
    """`SignInThrottle` in this process: one node, reset by a restart."""

    def __init__(
        self, clock: Callable[[], float] = time.time, limits: SignInLimits | None = None
    ) -> None:
        limits = limits or SignInLimits()
        self._logs = (
            FailureLog(limits.pair, clock),
            FailureLog(limits.ip, clock),
            FailureLog(limits.user, clock),
        )

    async def attempt(self, username: str, ip: str) -> Attempt:
        return self.attempt_now(username, ip)

    def attempt_now(self, username: str, ip: str) -> Attempt:
        keys = throttle_keys(username, ip)
        waits = [log.retry_after(key) or 0.0 for log, key in zip(self._logs, keys, strict=True)]
        if max(waits) > 0:
            return Attempt(username, ip, "", seconds(max(waits)), shared=False)
        ticket = secrets.token_hex(8)
        for log, key in zip(self._logs, keys, strict=True):
            log.failed(key, ticket)
        return Attempt(username, ip, ticket, shared=False)

    async def forgive(self, attempt: Attempt) -> None:
        self.forgive_now(attempt, clear_pair=False)

    async def succeeded(self, attempt: Attempt) -> None:
        self.forgive_now(attempt, clear_pair=True)

    def forgive_now(self, attempt: Attempt, *, clear_pair: bool) -> None:
        if attempt.wait is not None:
            return  # refused: nothing was counted
        pair, ip, user = throttle_keys(attempt.username, attempt.ip)
        pair_log, ip_log, user_log = self._logs
        pair_log.forget(pair, None if clear_pair else attempt.ticket)
        ip_log.forget(ip, attempt.ticket)
        user_log.forget(user, attempt.ticket)
