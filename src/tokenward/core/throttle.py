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

`SignInThrottle` is the port; its backends are in store/: `memory_signin_throttle` (one node)
and `redis_signin_throttle` (one allowance for every node, kept across restarts).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol


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
