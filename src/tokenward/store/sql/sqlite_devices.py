"""DeviceStore.poll on a SQLite file through the `SqliteWriter` (store/sql/sqlite_writer.py).

Through the ORM every poll was a write transaction: BEGIN IMMEDIATE took SQLite's one write
lock before looking the device code up, so a public client sending made-up device codes (it
needs no secret) queued every refresh and code exchange of the server behind its polls, at
about 2 ms each (docs/performance.md). Here a code nobody issued costs one read on the event
loop's connection and takes no lock; a real one is read and updated in the writer's batch,
under the write lock, as before: of concurrent polls of an approved code exactly one sees it
approved and marks it consumed. Everything else is inherited unchanged.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.records import DeviceRecord
from tokenward.store.sql.devices import SqlDeviceStore, polled
from tokenward.store.sql.grant_rows import device_of, device_query
from tokenward.store.sql.sqlite_writer import SqliteWriter

_DEVICE = device_query("?")
_EXISTS = "SELECT 1 FROM device_codes WHERE device_digest = ?"

Poll = tuple[DeviceRecord | None, bool]


class SqliteDeviceStore(SqlDeviceStore):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writer: SqliteWriter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(sessions, clock)
        self._writer = writer

    async def poll(self, device_digest: str, now: float) -> Poll:
        found = await self._writer.read(
            lambda connection: connection.execute(_EXISTS, (device_digest,)).fetchone()
        )
        if found is None:
            return None, False
        return await self._writer.write(lambda connection: poll(connection, device_digest, now))


def poll(connection: sqlite3.Connection, device_digest: str, now: float) -> Poll:
    """As SqlDeviceStore.poll, inside the writer's transaction (the write lock is held)."""
    row = connection.execute(_DEVICE, (device_digest,)).fetchone()
    if row is None:  # purged since the read above
        return None, False
    record = device_of(row)  # as it was: what this poll answers from
    values, too_fast = polled(record, now)
    assignments = ", ".join(f"{column} = ?" for column in values)  # our own column names
    connection.execute(
        f"UPDATE device_codes SET {assignments} WHERE device_digest = ?",  # noqa: S608
        (*values.values(), device_digest),
    )
    return record, too_fast
