"""SessionStore on SQL: browser logins by id, by the cookie secret's digest (a unique, indexed
column), and by user."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.ports import Conflict
from tokenward.core.records import SessionRecord
from tokenward.store.sql.models import SessionRow, upsert

# Every this many puts (per process) also deletes sessions that expired over PURGE_AFTER ago.
PURGE_EVERY = 1024
PURGE_AFTER = 86400.0


class SqlSessionStore:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Callable[[], float] = time.time
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._puts = 0

    async def put(self, session: SessionRecord) -> None:
        """Insert or replace by session_id; a secret digest already used by another session
        raises `Conflict` (the cookie secret names exactly one session)."""
        self._puts += 1
        try:
            async with self._sessions.begin() as db:
                await db.execute(upsert(db, SessionRow, [_values(session)], "session_id"))
                if self._puts % PURGE_EVERY == 0:
                    cutoff = self._clock() - PURGE_AFTER
                    await db.execute(delete(SessionRow).where(SessionRow.expires_at <= cutoff))
        except IntegrityError as error:
            raise Conflict("another session has this secret") from error

    async def get(self, session_id: str) -> SessionRecord | None:
        async with self._sessions() as db:
            row = await db.get(SessionRow, session_id)
            return None if row is None else _record(row)

    async def by_secret(self, secret_digest: str) -> SessionRecord | None:
        async with self._sessions() as db:
            row = await db.scalar(
                select(SessionRow).where(SessionRow.secret_digest == secret_digest)
            )
            return None if row is None else _record(row)

    async def end(self, session_id: str, now: float) -> SessionRecord | None:
        async with self._sessions.begin() as db:
            # Conditional, so ending twice keeps the first ended_at (idempotent).
            await db.execute(
                update(SessionRow)
                .where(SessionRow.session_id == session_id, SessionRow.ended_at.is_(None))
                .values(ended_at=now)
            )
            row = await db.scalar(
                select(SessionRow)
                .where(SessionRow.session_id == session_id)
                .execution_options(populate_existing=True)
            )
            return None if row is None else _record(row)

    async def for_user(self, user_id: str) -> Sequence[SessionRecord]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(SessionRow)
                .where(SessionRow.user_id == user_id)
                .order_by(SessionRow.auth_time, SessionRow.session_id)
            )
            return [_record(row) for row in rows]


def _values(session: SessionRecord) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "secret_digest": session.secret_digest,
        "user_id": session.user_id,
        "auth_time": session.auth_time,
        "expires_at": session.expires_at,
        "acr": session.acr,
        "ended_at": session.ended_at,
    }


def _record(row: SessionRow) -> SessionRecord:
    return SessionRecord(
        session_id=row.session_id,
        secret_digest=row.secret_digest,
        user_id=row.user_id,
        auth_time=row.auth_time,
        expires_at=row.expires_at,
        acr=row.acr,
        ended_at=row.ended_at,
    )
