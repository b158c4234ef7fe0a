"""Dynamic client registration's tokens on SQL.

`spend` is one UPDATE ... WHERE (live, not used up) RETURNING: of concurrent uses the database
lets at most `max_uses - uses` through (PostgreSQL re-checks the WHERE on the row it waited for;
SQLite has one writer at a time). A token that is not there or not usable is refused by a read
alone: the UPDATE is a write transaction, which on SQLite takes the database's one write lock,
and the registration endpoint is open to anyone. `add_open` counts the open registrations and
adds one under a lock, so the cap holds across nodes.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.records import InitialAccessToken
from tokenward.store.sql.engine import reading
from tokenward.store.sql.models import (
    InitialAccessTokenRow,
    RegistrationAccessTokenRow,
    lock_for_writing,
)

_Row = InitialAccessTokenRow
_Token = RegistrationAccessTokenRow
# A fixed bigint names the PostgreSQL advisory lock of open registrations: ASCII "twopen".
_OPEN_LOCK = 0x74776F70656E


class SqlInitialAccessTokens:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def save(self, token: InitialAccessToken) -> None:
        async with self._sessions.begin() as session:
            session.add(
                _Row(
                    token_id=token.token_id,
                    digest=token.digest,
                    created_at=token.created_at,
                    expires_at=token.expires_at,
                    max_uses=token.max_uses,
                    uses=token.uses,
                    revoked=token.revoked,
                )
            )

    async def find(self, digest: str, now: float) -> InitialAccessToken | None:
        async with self._sessions() as session:
            await reading(session)
            row = await session.scalar(select(_Row).where(_Row.digest == digest, *_usable(now)))
            return None if row is None else _record(row)

    async def spend(self, digest: str, now: float) -> InitialAccessToken | None:
        if await self.find(digest, now) is None:
            return None
        async with self._sessions.begin() as session:
            row = (
                await session.execute(
                    update(_Row)
                    .where(_Row.digest == digest, *_usable(now))
                    .values(uses=_Row.uses + 1)
                    .returning(
                        _Row.token_id,
                        _Row.digest,
                        _Row.created_at,
                        _Row.expires_at,
                        _Row.max_uses,
                        _Row.uses,
                    )
                )
            ).one_or_none()
        if row is None:
            return None
        return InitialAccessToken(
            row.token_id, row.digest, row.created_at, row.expires_at, row.max_uses, row.uses - 1
        )

    async def revoke(self, token_id: str) -> bool:
        async with self._sessions.begin() as session:
            found = await session.scalar(
                update(_Row)
                .where(_Row.token_id == token_id)
                .values(revoked=True)
                .returning(_Row.token_id)
            )
            return found is not None

    async def list_all(self) -> Sequence[InitialAccessToken]:
        async with self._sessions() as session:
            rows = await session.scalars(select(_Row))
            tokens = [_record(row) for row in rows]
        return sorted(tokens, key=lambda token: (token.created_at, token.token_id))


def _usable(now: float) -> tuple[ColumnElement[bool], ...]:
    return (
        _Row.revoked.is_(False),
        _Row.expires_at > now,
        or_(_Row.max_uses.is_(None), _Row.uses < _Row.max_uses),
    )


def _record(row: _Row) -> InitialAccessToken:
    return InitialAccessToken(
        row.token_id,
        row.digest,
        row.created_at,
        row.expires_at,
        row.max_uses,
        row.uses,
        row.revoked,
    )


class SqlRegistrationAccessTokens:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def put(self, client_id: str, digest: str) -> None:
        """Insert, or replace only the digest: a rotation keeps how the client registered."""
        async with self._sessions.begin() as session:
            dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
            insert = dialect.insert(_Token).values(client_id=client_id, digest=digest)
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=["client_id"], set_={"digest": insert.excluded.digest}
                )
            )

    async def add_open(self, client_id: str, digest: str, limit: int) -> bool:
        async with self._sessions.begin() as session:
            # Count and insert under one lock: SQLite's write lock, or on PostgreSQL a
            # transaction-scoped advisory lock (the rows being counted cannot be locked before
            # they exist). Only open registrations wait on it, never a token lookup.
            if session.get_bind().dialect.name == "postgresql":
                await session.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _OPEN_LOCK}
                )
            else:
                await lock_for_writing(session)
            taken = await session.scalar(
                select(func.count()).select_from(_Token).where(_Token.open_registration)
            )
            if (taken or 0) >= limit:
                return False
            session.add(_Token(client_id=client_id, digest=digest, open_registration=True))
        return True

    async def get(self, client_id: str) -> str | None:
        async with self._sessions() as session:
            row = await session.get(_Token, client_id)
            return None if row is None else row.digest

    async def delete(self, client_id: str) -> bool:
        async with self._sessions.begin() as session:
            gone = await session.scalar(
                delete(_Token).where(_Token.client_id == client_id).returning(_Token.client_id)
            )
            return gone is not None
