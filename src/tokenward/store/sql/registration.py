"""Dynamic client registration's tokens on SQL.

`spend` is one UPDATE ... WHERE (live, not used up) RETURNING: of concurrent uses the database
lets at most `max_uses - uses` through (PostgreSQL re-checks the WHERE on the row it waited for;
SQLite has one writer at a time).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.records import InitialAccessToken
from tokenward.store.sql.models import (
    InitialAccessTokenRow,
    RegistrationAccessTokenRow,
    upsert,
)

_Row = InitialAccessTokenRow


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
            row = await session.scalar(select(_Row).where(_Row.digest == digest, *_usable(now)))
            return None if row is None else _record(row)

    async def spend(self, digest: str, now: float) -> InitialAccessToken | None:
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
        values = {"client_id": client_id, "digest": digest}
        async with self._sessions.begin() as session:
            await session.execute(
                upsert(session, RegistrationAccessTokenRow, [values], "client_id")
            )

    async def get(self, client_id: str) -> str | None:
        async with self._sessions() as session:
            row = await session.get(RegistrationAccessTokenRow, client_id)
            return None if row is None else row.digest

    async def delete(self, client_id: str) -> bool:
        async with self._sessions.begin() as session:
            gone = await session.scalar(
                delete(RegistrationAccessTokenRow)
                .where(RegistrationAccessTokenRow.client_id == client_id)
                .returning(RegistrationAccessTokenRow.client_id)
            )
            return gone is not None
