"""SessionParticipants on SQL: one row per (session, client), indexed by user and expiry."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.records import SessionParticipant
from tokenward.store.sql.models import SessionParticipantRow

_KEY = ["session_id", "client_id"]


class SqlSessionParticipants:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add(self, participant: SessionParticipant) -> None:
        values = {
            "session_id": participant.session_id,
            "client_id": participant.client_id,
            "user_id": participant.user_id,
            "expires_at": participant.expires_at,
        }
        async with self._sessions.begin() as db:
            # One statement on both databases: the later of the two expiry times wins.
            if db.get_bind().dialect.name == "postgresql":
                pg = postgresql.insert(SessionParticipantRow).values(values)
                await db.execute(
                    pg.on_conflict_do_update(
                        index_elements=_KEY,
                        set_={
                            "expires_at": func.greatest(
                                SessionParticipantRow.expires_at, pg.excluded.expires_at
                            )
                        },
                    )
                )
            else:
                lite = sqlite.insert(SessionParticipantRow).values(values)
                await db.execute(
                    lite.on_conflict_do_update(
                        index_elements=_KEY,
                        set_={
                            "expires_at": func.max(
                                SessionParticipantRow.expires_at, lite.excluded.expires_at
                            )
                        },
                    )
                )

    async def of_session(self, session_id: str, now: float) -> Sequence[SessionParticipant]:
        return await self._select(
            SessionParticipantRow.session_id == session_id,
            SessionParticipantRow.expires_at > now,
        )

    async def of_user(self, user_id: str, now: float) -> Sequence[SessionParticipant]:
        return await self._select(
            SessionParticipantRow.user_id == user_id, SessionParticipantRow.expires_at > now
        )

    async def purge(self, now: float) -> int:
        async with self._sessions.begin() as db:
            result = await db.execute(
                delete(SessionParticipantRow).where(SessionParticipantRow.expires_at <= now)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def _select(self, *where: object) -> Sequence[SessionParticipant]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(SessionParticipantRow)
                .where(*where)  # type: ignore[arg-type]
                .order_by(SessionParticipantRow.session_id, SessionParticipantRow.client_id)
                .limit(1000)  # bounded: a user with more live sessions than this is abuse
            )
            return [
                SessionParticipant(row.session_id, row.user_id, row.client_id, row.expires_at)
                for row in rows
            ]
