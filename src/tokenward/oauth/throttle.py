"""Brute-force throttling for sign-in: failures per key in a sliding window (memory backend).

A sliding log is exact: a key is refused while `limit` failures lie within the last `window`
seconds, and told how long until the oldest of them leaves the window.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

MAX_KEYS = 100_000


class FailureThrottle:
    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.time) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, key: str) -> float | None:
        """Seconds to wait before trying again, or None when allowed now."""
        failures = self._recent(key)
        if failures is None or len(failures) < self._limit:
            return None
        return failures[0] + self._window - self._clock()

    def failed(self, key: str) -> None:
        if len(self._failures) >= MAX_KEYS:
            self._failures = {k: v for k, v in self._failures.items() if self._recent(k)}
        self._failures.setdefault(key, deque(maxlen=self._limit)).append(self._clock())

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def _recent(self, key: str) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        cutoff = self._clock() - self._window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures


class LoginThrottle:
    """Sign-in failures counted per username and per client IP (both must be under limit)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        per_user: int = 5,
        per_ip: int = 20,
        window: float = 300.0,
    ) -> None:
        self._users = FailureThrottle(per_user, window, clock)
        self._ips = FailureThrottle(per_ip, window, clock)

    def wait(self, username: str, ip: str) -> int | None:
        waits = [
            w for w in (self._users.retry_after(username.lower()), self._ips.retry_after(ip)) if w
        ]
        return max(1, int(max(waits)) + 1) if waits else None

    def failed(self, username: str, ip: str) -> None:
        self._users.failed(username.lower())
        self._ips.failed(ip)

    def succeeded(self, username: str, ip: str) -> None:
        self._users.succeeded(username.lower())
