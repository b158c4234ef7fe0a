"""ReplayCache on a SQLite file through the `SqliteWriter` (store/sql/sqlite_writer.py).

Every DPoP proof and every private_key_jwt assertion writes a marker. Through SQLAlchemy's
aiosqlite adapter that was a transaction of its own per request, several thread hops and a
commit (an fsync) each; here the same statement as store/sql/replay.py joins the writer's
group-committed batch: one hop, and one fsync shared with the refreshes and code exchanges
committed beside it. The answer still comes only after the marker is committed, and the
writer's BEGIN IMMEDIATE still serialises it with every other process on the file, so of
concurrent uses of one key exactly one gets True.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.store.sql import replay as sql_replay
from tokenward.store.sql.replay import SqlReplayCache, replay_digest
from tokenward.store.sql.sqlite_writer import SqliteWriter

# A marker that expires at `now` is already expired, as in the memory backend.
_FIRST_USE = (
    "INSERT INTO replay_markers (key_digest, expires_at) VALUES (?, ?)"
    " ON CONFLICT (key_digest) DO UPDATE SET expires_at = excluded.expires_at"
    " WHERE replay_markers.expires_at <= ? RETURNING key_digest"
)
_HOLD = (
    "INSERT INTO replay_markers (key_digest, expires_at) VALUES (?, ?)"
    " ON CONFLICT (key_digest) DO UPDATE SET expires_at = excluded.expires_at"
)
_PURGE = "DELETE FROM replay_markers WHERE expires_at <= ?"


class SqliteReplayCache(SqlReplayCache):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writer: SqliteWriter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(sessions, clock)
        self._writer = writer

    async def first_use(self, key: str, expires_at: float) -> bool:
        """True the first time `key` is seen before it expires; False for every replay."""
        now = self._clock()
        self._calls += 1
        purge = self._calls % sql_replay.PURGE_EVERY == 0
        digest = replay_digest(key)

        def work(connection: sqlite3.Connection) -> bool:
            if purge:
                connection.execute(_PURGE, (now,))
            written = connection.execute(_FIRST_USE, (digest, expires_at, now)).fetchone()
            return written is not None

        return await self._writer.write(work)

    async def hold(self, key: str, expires_at: float) -> None:
        digest = replay_digest(key)
        now = self._clock()

        def work(connection: sqlite3.Connection) -> None:
            if expires_at <= now:
                connection.execute("DELETE FROM replay_markers WHERE key_digest = ?", (digest,))
            else:
                connection.execute(_HOLD, (digest, expires_at))

        await self._writer.write(work)
