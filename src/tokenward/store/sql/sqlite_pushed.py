"""PushedRequestStore on a SQLite file through the `SqliteWriter` (store/sql/sqlite_writer.py).

A FAPI 2.0 client pushes every authorization request (RFC 9126) and `/authorize` takes it back:
two single-row writes per authorization, each a transaction of its own with its own fsync
through SQLAlchemy's aiosqlite adapter (about 3 ms of CPU each, docs/performance.md). Here both
join the writer's group-committed batch. `take` is the same single DELETE ... RETURNING as
store/sql/pushed_requests.py, under SQLite's write lock, so of concurrent takes one wins; a
handle that matches no row is answered by a read on the event loop's connection and takes no
lock. Everything else is inherited unchanged.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.records import PushedRequest
from tokenward.store.sql import pushed_requests as sql_pushed
from tokenward.store.sql.pushed_requests import SqlPushedRequestStore
from tokenward.store.sql.sqlite_writer import SqliteWriter

_SAVE = (
    "INSERT INTO pushed_requests (digest, client_id, params, expires_at, signed)"
    " VALUES (?, ?, ?, ?, ?)"
)
_EXISTS = "SELECT 1 FROM pushed_requests WHERE digest = ? AND client_id = ?"
_TAKE = (
    "DELETE FROM pushed_requests WHERE digest = ? AND client_id = ?"
    " RETURNING digest, client_id, params, expires_at, signed"
)


class SqlitePushedRequestStore(SqlPushedRequestStore):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writer: SqliteWriter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(sessions, clock)
        self._writer = writer

    async def save(self, request: PushedRequest) -> None:
        self._saves += 1
        purge = self._saves % sql_pushed.PURGE_EVERY == 0
        now = self._clock()
        values = (
            request.digest,
            request.client_id,
            request.params,
            request.expires_at,
            request.signed,
        )

        def work(connection: sqlite3.Connection) -> None:
            # A plain INSERT: handles are random, and a clash must fail rather than replace one.
            connection.execute(_SAVE, values)
            if purge:
                connection.execute("DELETE FROM pushed_requests WHERE expires_at <= ?", (now,))

        await self._writer.write(work)

    async def take(self, digest: str, client_id: str, now: float) -> PushedRequest | None:
        found = await self._writer.read(
            lambda connection: connection.execute(_EXISTS, (digest, client_id)).fetchone()
        )
        if found is None:
            return None
        row = await self._writer.write(
            lambda connection: connection.execute(_TAKE, (digest, client_id)).fetchone()
        )
        if row is None or row[3] <= now:
            return None  # an expired request is deleted all the same
        return PushedRequest(row[0], row[1], row[2], row[3], bool(row[4]))
