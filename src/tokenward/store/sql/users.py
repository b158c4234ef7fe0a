"""UserStore on SQL. Username uniqueness is the database's UNIQUE constraint, so two
concurrent sign-ups for one name cannot both pass a check-then-insert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.ports import Conflict
from tokenward.core.records import UserRecord
from tokenward.store.sql.models import UserRow, upsert


class SqlUserStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, user_id: str) -> UserRecord | None:
        async with self._sessions() as session:
            row = await session.get(UserRow, user_id)
            return None if row is None else _record(row)

    async def by_username(self, username: str) -> UserRecord | None:
        async with self._sessions() as session:
            row = await session.scalar(select(UserRow).where(UserRow.username == username))
            return None if row is None else _record(row)

    async def put(self, user: UserRecord) -> None:
        try:
            async with self._sessions.begin() as session:
                # ON CONFLICT covers user_id only: a clash on username is an IntegrityError.
                await session.execute(upsert(session, UserRow, [_values(user)], "user_id"))
        except IntegrityError as error:
            raise Conflict(f"username {user.username!r} is taken") from error

    async def list_all(self) -> Sequence[UserRecord]:
        async with self._sessions() as session:
            rows = await session.scalars(select(UserRow))
            # Sorted here, not by ORDER BY: the database collation (en_US, C, ...) would make
            # the order differ between deployments; Python's is code point order everywhere.
            return sorted((_record(row) for row in rows), key=lambda user: user.username)


def _values(user: UserRecord) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "username": user.username,
        "password_hash": user.password_hash,
        "created_at": user.created_at,
        "password_changed_at": user.password_changed_at,
        "disabled": user.disabled,
        "claims": user.claims,
    }


def _record(row: UserRow) -> UserRecord:
    return UserRecord(
        user_id=row.user_id,
        username=row.username,
        password_hash=row.password_hash,
        created_at=row.created_at,
        password_changed_at=row.password_changed_at,
        disabled=row.disabled,
        claims=row.claims,
    )
