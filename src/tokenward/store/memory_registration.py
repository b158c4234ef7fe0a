"""Dynamic client registration's tokens in process memory (tests, the in-memory deployment)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tokenward.core.records import InitialAccessToken

MAX_TOKENS = 10_000  # initial access tokens kept; an operator creates a few


class MemoryInitialAccessTokens:
    def __init__(self) -> None:
        self._tokens: dict[str, InitialAccessToken] = {}  # by digest

    async def save(self, token: InitialAccessToken) -> None:
        if len(self._tokens) >= MAX_TOKENS:
            raise OverflowError("too many initial access tokens: revoke some first")
        self._tokens[token.digest] = token

    async def find(self, digest: str, now: float) -> InitialAccessToken | None:
        token = self._tokens.get(digest)
        return token if token is not None and usable(token, now) else None

    async def spend(self, digest: str, now: float) -> InitialAccessToken | None:
        # No await between the read and the write: atomic on the event loop.
        token = self._tokens.get(digest)
        if token is None or not usable(token, now):
            return None
        self._tokens[digest] = replace(token, uses=token.uses + 1)
        return token

    async def revoke(self, token_id: str) -> bool:
        for digest, token in self._tokens.items():
            if token.token_id == token_id:
                self._tokens[digest] = replace(token, revoked=True)
                return True
        return False

    async def list_all(self) -> Sequence[InitialAccessToken]:
        return sorted(self._tokens.values(), key=lambda token: (token.created_at, token.token_id))


class MemoryRegistrationAccessTokens:
    def __init__(self) -> None:
        self._digests: dict[str, str] = {}
        self._open: set[str] = set()  # clients registered openly

    async def put(self, client_id: str, digest: str) -> None:
        self._digests[client_id] = digest

    async def add_open(self, client_id: str, digest: str, limit: int) -> bool:
        # No await between the count and the write: atomic on the event loop.
        if len(self._open) >= limit:
            return False
        self._open.add(client_id)
        self._digests[client_id] = digest
        return True

    async def get(self, client_id: str) -> str | None:
        return self._digests.get(client_id)

    async def delete(self, client_id: str) -> bool:
        self._open.discard(client_id)
        return self._digests.pop(client_id, None) is not None


def usable(token: InitialAccessToken, now: float) -> bool:
    if token.revoked or token.expires_at <= now:
        return False
    return token.max_uses is None or token.uses < token.max_uses
