"""ReplayCache on SQL: single-use markers (private_key_jwt and DPoP proof jti) shared by every
server on the database.

`first_use` is one statement: INSERT the marker, or, if the key is already there, replace it
only WHERE the old marker has expired; RETURNING says whether a row was written. On PostgreSQL a
concurrent insert of the same key waits for the first to commit, then finds a live marker and
writes nothing; SQLite has one writer at a time. So exactly one caller gets True.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import Insert

from tokenward.store.sql.models import ReplayMarkerRow

# Every this many calls (per process) also deletes the expired markers, through the expires_at
# index; a marker is only needed until it expires, when it may be replaced anyway.
PURGE_EVERY = 1024


class SqlReplayCache:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Callable[[], float] = time.time
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._calls = 0

    async def first_use(self, key: str, expires_at: float) -> bool:
        """True the first time `key` is seen before it expires; False for every replay."""
        now = self._clock()
        self._calls += 1
        # Keys embed client-chosen jti values: a digest bounds the primary key's size.
        values = {"key_digest": replay_digest(key), "expires_at": expires_at}
        async with self._sessions.begin() as session:
            if self._calls % PURGE_EVERY == 0:
                await session.execute(
                    delete(ReplayMarkerRow).where(ReplayMarkerRow.expires_at <= now)
                )
            written = await session.scalar(
                _insert_unless_live(session, values, now).returning(ReplayMarkerRow.key_digest)
            )
            return written is not None

    async def hold(self, key: str, expires_at: float) -> None:
        digest = replay_digest(key)
        async with self._sessions.begin() as session:
            if expires_at <= self._clock():
                await session.execute(
                    delete(ReplayMarkerRow).where(ReplayMarkerRow.key_digest == digest)
                )
                return
            values = {"key_digest": digest, "expires_at": expires_at}
            await session.execute(_upsert(session, values))


def replay_digest(key: str) -> str:
    # surrogatepass: a jti is any JSON string, a lone surrogate included; never a 500.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _upsert(session: AsyncSession, values: dict[str, Any]) -> Insert:
    if session.get_bind().dialect.name == "postgresql":
        pg = postgresql.insert(ReplayMarkerRow).values(values)
        return pg.on_conflict_do_update(
            index_elements=["key_digest"], set_={"expires_at": pg.excluded.expires_at}
        )
    lite = sqlite.insert(ReplayMarkerRow).values(values)
    return lite.on_conflict_do_update(
        index_elements=["key_digest"], set_={"expires_at": lite.excluded.expires_at}
    )


def _insert_unless_live(session: AsyncSession, values: dict[str, Any], now: float) -> Insert:
    # A marker that expires at `now` is already expired, as in the memory backend.
    expired = ReplayMarkerRow.expires_at <= now
    if session.get_bind().dialect.name == "postgresql":
        pg = postgresql.insert(ReplayMarkerRow).values(values)
        return pg.on_conflict_do_update(
            index_elements=["key_digest"],
            set_={"expires_at": pg.excluded.expires_at},
            where=expired,
        )
    lite = sqlite.insert(ReplayMarkerRow).values(values)
    return lite.on_conflict_do_update(
        index_elements=["key_digest"], set_={"expires_at": lite.excluded.expires_at}, where=expired
    )
