"""Storage Protocols: one concern each, at most five methods (ARCHITECTURE.md, Storage)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tokenward.store.records import ClientRecord, Revocation, StoredKey, UserRecord
from tokenward.tokens.claims import AccessToken


class KeyStore(Protocol):
    async def load_all(self) -> Sequence[StoredKey]: ...

    async def save(self, keys: Sequence[StoredKey]) -> None:
        """Insert or update by kid, all or nothing."""
        ...


class RevocationStore(Protocol):
    async def revoke(self, revocation: Revocation) -> int:
        """Record a revocation durably and publish it; returns its sequence number."""
        ...

    async def since(self, seq: int) -> Sequence[tuple[int, Revocation]]:
        """Revocations after `seq`, oldest first: how a mirror catches up."""
        ...

    async def active(self, now: float) -> Sequence[tuple[int, Revocation]]:
        """Every revocation that can still match a live token: how a mirror starts."""
        ...


class AccessTokenStore(Protocol):
    """Opaque access tokens by digest."""

    async def save(self, digest: str, token: AccessToken) -> None: ...

    async def get(self, digest: str) -> AccessToken | None: ...

    def get_sync(self, digest: str) -> AccessToken | None:
        """Only backends that can answer without I/O implement this; others return None."""
        ...

    async def delete(self, digest: str) -> bool: ...


class ClientStore(Protocol):
    async def get(self, client_id: str) -> ClientRecord | None: ...

    async def put(self, client: ClientRecord) -> None:
        """Insert or replace by client_id."""
        ...

    async def list_all(self) -> Sequence[ClientRecord]: ...

    async def delete(self, client_id: str) -> bool: ...


class UserStore(Protocol):
    async def get(self, user_id: str) -> UserRecord | None: ...

    async def by_username(self, username: str) -> UserRecord | None: ...

    async def put(self, user: UserRecord) -> None:
        """Insert or replace by user_id; usernames are unique (a clash raises `Conflict`)."""
        ...

    async def list_all(self) -> Sequence[UserRecord]: ...


class Conflict(Exception):
    """A unique constraint was violated (username taken, client id in use)."""
