"""Where browser mode keeps its sessions: the `SessionStore` port and the in-memory store.

The store sees only what `bff_seal` made of a session: a key derived from the cookie and a
sealed blob, so no backend ever holds a cookie value or a readable token. Two adapters:

- `MemorySessionStore` (here): this process's memory; one gateway process, or sticky sessions;
- `RedisSessionStore` (`tokenward.store.redis_bff_sessions`): shared by every gateway and
  worker, chosen by the composition root when the gateway has a Redis.

Lifetimes are the store's: a record, a pending sign-in and a refresh lock each vanish at their
TTL. `take_login` is take-once (a callback cannot be redeemed twice, on any gateway), and
`replace` never recreates a record that logout (or expiry) removed meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

MAX_SESSIONS = 100_000  # per process; the oldest give way beyond it
MAX_LOGINS = 10_000  # pending sign-ins: /login is unauthenticated, so this is bounded tightly


class SessionStore(Protocol):
    async def create(self, key: str, blob: bytes, ttl: float) -> None:
        """Store a new session record for `ttl` seconds."""

    async def load(self, key: str, idle: float | None) -> bytes | None:
        """The record, or None. `idle`: also push the record's expiry to `idle` seconds from
        now (the idle timeout), in the same step."""

    async def replace(self, key: str, blob: bytes, ttl: float) -> bool:
        """Overwrite an existing record (after a refresh); False when it is gone."""

    async def delete(self, key: str) -> None: ...

    async def put_login(self, key: str, blob: bytes, ttl: float) -> None: ...

    async def take_login(self, key: str) -> bytes | None:
        """The pending sign-in, removed in the same step (take-once)."""

    async def lock(self, key: str, owner: str, ttl: float) -> bool:
        """Take the session's refresh lock for `ttl` seconds; False when someone holds it."""

    async def unlock(self, key: str, owner: str) -> None:
        """Release the lock if `owner` still holds it (not one taken over after expiry)."""


class _Expiring:
    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self._items: dict[str, tuple[bytes, float]] = {}
        self._limit = limit
        self._clock = clock

    def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            del self._items[key]
            return None
        return item[0]

    def set(self, key: str, value: bytes, ttl: float) -> None:
        now = self._clock()
        if len(self._items) >= self._limit:
            self._items = {k: v for k, v in self._items.items() if v[1] > now}
        while len(self._items) >= self._limit:  # still full: the oldest entry goes
            del self._items[next(iter(self._items))]
        self._items.pop(key, None)
        self._items[key] = (value, now + ttl)

    def expire(self, key: str, ttl: float) -> None:
        item = self._items.get(key)
        if item is not None:
            self._items[key] = (item[0], self._clock() + ttl)

    def pop(self, key: str) -> bytes | None:
        value = self.get(key)
        self._items.pop(key, None)
        return value


class MemorySessionStore:
    """Sessions in this process (one gateway process: `workers: 1`, no shared Redis)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._sessions = _Expiring(MAX_SESSIONS, clock)
        self._logins = _Expiring(MAX_LOGINS, clock)
        self._locks = _Expiring(MAX_SESSIONS, clock)

    async def create(self, key: str, blob: bytes, ttl: float) -> None:
        self._sessions.set(key, blob, ttl)

    async def load(self, key: str, idle: float | None) -> bytes | None:
        blob = self._sessions.get(key)
        if blob is not None and idle is not None:
            self._sessions.expire(key, idle)
        return blob

    async def replace(self, key: str, blob: bytes, ttl: float) -> bool:
        if self._sessions.get(key) is None:
            return False
        self._sessions.set(key, blob, ttl)
        return True

    async def delete(self, key: str) -> None:
        self._sessions.pop(key)

    async def put_login(self, key: str, blob: bytes, ttl: float) -> None:
        self._logins.set(key, blob, ttl)

    async def take_login(self, key: str) -> bytes | None:
        return self._logins.pop(key)

    async def lock(self, key: str, owner: str, ttl: float) -> bool:
        if self._locks.get(key) is not None:
            return False
        self._locks.set(key, owner.encode(), ttl)
        return True

    async def unlock(self, key: str, owner: str) -> None:
        if self._locks.get(key) == owner.encode():
            self._locks.pop(key)
