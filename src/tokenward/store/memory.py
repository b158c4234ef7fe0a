"""In-process backends: tests, and the embedded single-process default for hot state."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from tokenward.guard.revocation_mirror import RevocationMirror
from tokenward.store.records import Revocation, StoredKey
from tokenward.tokens.claims import AccessToken


class MemoryKeyStore:
    def __init__(self) -> None:
        self._keys: dict[str, StoredKey] = {}

    async def load_all(self) -> Sequence[StoredKey]:
        return list(self._keys.values())

    async def save(self, keys: Sequence[StoredKey]) -> None:
        self._keys.update({key.kid: key for key in keys})


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
