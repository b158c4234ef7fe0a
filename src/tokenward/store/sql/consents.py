"""ConsentStore on SQL: one row per (user, client, scope).

A grant is a single INSERT ... ON CONFLICT DO NOTHING of its scopes, so it is a union by
construction: concurrent grants of different scopes to one user and client all land (a JSON set
in one row would need a read-modify-write, and two of those could lose one another's scopes).
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.store.sql.models import ConsentRow

_KEY = ["user_id", "client_id", "scope"]


class SqlConsentStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def granted(self, user_id: str, client_id: str) -> frozenset[str]:
        async with self._sessions() as session:
            scopes = await session.scalars(
                select(ConsentRow.scope).where(
                    ConsentRow.user_id == user_id, ConsentRow.client_id == client_id
                )
            )
            return frozenset(scopes)

    async def grant(self, user_id: str, client_id: str, scopes: frozenset[str]) -> None:
        if not scopes:
            return
        # Sorted: concurrent grants then take their row locks in one order (no deadlock).
        rows = [{"user_id": user_id, "client_id": client_id, "scope": s} for s in sorted(scopes)]
        async with self._sessions.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                pg = postgresql.insert(ConsentRow).values(rows)
                await session.execute(pg.on_conflict_do_nothing(index_elements=_KEY))
            else:
                lite = sqlite.insert(ConsentRow).values(rows)
                await session.execute(lite.on_conflict_do_nothing(index_elements=_KEY))

    async def withdraw(self, user_id: str, client_id: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                delete(ConsentRow).where(
                    ConsentRow.user_id == user_id, ConsentRow.client_id == client_id
                )
            )
