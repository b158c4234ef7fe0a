"""Brute-force throttling for sign-in: failures per key in a sliding window.

Three keys per attempt, each with its own limit (`SignInLimits`):

- (username, IP): the tight one. Whoever guesses alice's password from one address is stopped
  there, while alice, from her own address, is not locked out by them.
- IP: looser; one address guessing many usernames.
- username: a ceiling far above what one person mistypes, against guessing one account from
  many addresses. Reaching it refuses that username from everywhere: the price of stopping a
  distributed guess, paid only under an attack the monitor sees (LOGIN_FAILED bursts).

An attempt is counted *before* the password is checked (`attempt`), and taken back if it was
right (`succeeded`, `forgive`): counting after the check would let N parallel guesses all pass
the check first. A sliding log is exact: a key is refused while `limit` failures lie within its
last `window` seconds, and told how long until the oldest of them leaves the window.

This module is the per-process backend; store/redis_signin_throttle.py shares one allowance
between every node and across restarts.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

MAX_KEYS = 100_000


@dataclass(frozen=True, slots=True)
class Limit:
    failures: int
    window: float  # seconds


@dataclass(frozen=True, slots=True)
class SignInLimits:
    pair: Limit = Limit(5, 300.0)  # one username from one address
    ip: Limit = Limit(20, 300.0)  # one address, any usernames
    user: Limit = Limit(100, 3600.0)  # one username, from anywhere


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt counted as a failure until it is taken back. `wait`: seconds to wait when it
    was refused (then nothing was counted)."""

    username: str
    ip: str
    ticket: str
    wait: int | None = None
    shared: bool = True  # counted in the shared store (False: in this process, as a fallback)


class SignInThrottle(Protocol):
    async def attempt(self, username: str, ip: str) -> Attempt:
        """Refuse (`wait` set) while any key is at its limit; else count this attempt."""
        ...

    async def forgive(self, attempt: Attempt) -> None:
        """The attempt did not fail (a right code): take it back."""
        ...

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: take the attempt back and forget this username's earlier
        failures from this address (not the address's or the username's overall counts)."""
        ...


def throttle_keys(username: str, ip: str) -> tuple[str, str, str]:
    """(pair, ip, user) keys: digests, so any username is a short, safe key."""
    user = hashlib.sha256(username.lower().encode("utf-8", "replace")).hexdigest()[:32]
    pair = hashlib.sha256(f"{user}|{ip}".encode()).hexdigest()[:32]
    return f"p:{pair}", f"i:{ip}", f"u:{user}"


def seconds(wait: float) -> int:
    """Whole seconds to tell the user: rounded up, at least 1."""
    return max(1, int(wait) + 1)


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
