"""In-process backends: tests, and the embedded single-process default for hot state."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence

from tokenward.core.claims import AccessToken
from tokenward.core.ports import Conflict
from tokenward.core.records import ClientRecord, Revocation, SigningChoice, StoredKey, UserRecord
from tokenward.core.revocation_mirror import RevocationMirror


class MemoryKeyStore:
    def __init__(self) -> None:
        self._keys: dict[str, StoredKey] = {}
        self._choices: dict[str, SigningChoice] = {}

    async def load_all(self) -> Sequence[StoredKey]:
        return list(self._keys.values())

    async def save(self, keys: Sequence[StoredKey]) -> None:
        self._keys.update({key.kid: key for key in keys})

    async def load_choices(self) -> Sequence[SigningChoice]:
        return list(self._choices.values())

    async def save_choices(self, choices: Sequence[SigningChoice]) -> None:
        self._choices.update({choice.audience: choice for choice in choices})


class MemoryRevocationStore:
    """Keeps the log and feeds the mirrors in this process: here the mirror is the store."""

    def __init__(self, mirrors: Iterable[RevocationMirror] = ()) -> None:
        self._log: list[tuple[int, Revocation]] = []
        self._mirrors = list(mirrors)

    def attach(self, mirror: RevocationMirror) -> None:
        for seq, revocation in self._log:
            mirror.apply(revocation, seq)
        self._mirrors.append(mirror)

    async def revoke(self, revocation: Revocation) -> int:
        seq = len(self._log) + 1
        self._log.append((seq, revocation))
        for mirror in self._mirrors:
            mirror.apply(revocation, seq)
        return seq

    async def since(self, seq: int) -> Sequence[tuple[int, Revocation]]:
        return self._log[seq:]

    async def active(self, now: float) -> Sequence[tuple[int, Revocation]]:
        return [(seq, rev) for seq, rev in self._log if rev.expires_at > now]

    async def page(
        self, after: int, now: float, limit: int
    ) -> tuple[int, Sequence[tuple[int, Revocation]]]:
        live = (entry for entry in self._log[after:] if entry[1].expires_at > now)
        return len(self._log), list(itertools.islice(live, limit))


class MemoryAccessTokenStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._tokens: dict[str, AccessToken] = {}
        self._clock = clock

    async def save(self, digest: str, token: AccessToken) -> None:
        self._purge()
        self._tokens[digest] = token

    async def get(self, digest: str) -> AccessToken | None:
        return self.get_sync(digest)

    def get_sync(self, digest: str) -> AccessToken | None:
        token = self._tokens.get(digest)
        if token is not None and token.exp <= self._clock():
            del self._tokens[digest]
            return None
        return token

    async def delete(self, digest: str) -> bool:
        return self._tokens.pop(digest, None) is not None

    def _purge(self) -> None:
        now = self._clock()
        if len(self._tokens) % 1024 == 0:  # amortised sweep, so the map cannot grow unbounded
            for digest in [d for d, t in self._tokens.items() if t.exp <= now]:
                del self._tokens[digest]


class MemoryClientStore:
    def __init__(self) -> None:
        self._clients: dict[str, ClientRecord] = {}

    async def get(self, client_id: str) -> ClientRecord | None:
        return self._clients.get(client_id)

    async def put(self, client: ClientRecord) -> None:
        self._clients[client.client_id] = client

    async def list_all(self) -> Sequence[ClientRecord]:
        return sorted(self._clients.values(), key=lambda client: client.client_id)

    async def delete(self, client_id: str) -> bool:
        return self._clients.pop(client_id, None) is not None


class MemoryUserStore:
    def __init__(self) -> None:
        self._users: dict[str, UserRecord] = {}

    async def get(self, user_id: str) -> UserRecord | None:
        return self._users.get(user_id)

    async def by_username(self, username: str) -> UserRecord | None:
        return next((u for u in self._users.values() if u.username == username), None)

    async def put(self, user: UserRecord) -> None:
        owner = await self.by_username(user.username)
        if owner is not None and owner.user_id != user.user_id:
            raise Conflict(f"username {user.username!r} is taken")
        self._users[user.user_id] = user

    async def list_all(self) -> Sequence[UserRecord]:
        return sorted(self._users.values(), key=lambda user: user.username)


class MemoryReplayCache:
    """Single-use markers (private_key_jwt jti, DPoP proof jti) for one process."""

    def __init__(self, clock: Callable[[], float] = time.time, max_entries: int = 100_000) -> None:
        self._seen: dict[str, float] = {}
        self._clock = clock
        self._max_entries = max_entries

    async def first_use(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        if len(self._seen) >= self._max_entries:
            self._seen = {k: until for k, until in self._seen.items() if until > now}
            if len(self._seen) >= self._max_entries:
                return False  # full of live markers: refuse rather than forget (fail closed)
        until = self._seen.get(key)
        if until is not None and until > now:
            return False
        self._seen[key] = expires_at
        return True

    async def hold(self, key: str, expires_at: float) -> None:
        if expires_at <= self._clock():
            self._seen.pop(key, None)
        else:
            self._seen[key] = expires_at
