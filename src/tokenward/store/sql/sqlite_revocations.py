"""RevocationStore.revoke on a SQLite file through the `SqliteWriter` (store/sql/sqlite_writer.py).

A revocation is one INSERT whose sequence number is the mirrors' cursor. Through SQLAlchemy's
aiosqlite adapter each was a transaction of its own with its own fsync, about 3 ms of CPU under
concurrency (docs/performance.md): a logout storm, a detector revoking many subjects, or a
refresh-token reuse denying every token its family minted met that cap. Here the INSERT joins
the writer's group-committed batch. The invariant the feed relies on still holds: BEGIN
IMMEDIATE serialises every writer of the file, and a batch commits its rows together, so every
sequence number up to a visible head is committed. The caller is answered after the commit,
so a revocation is durable before it is acknowledged. Reads are inherited unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.records import Revocation
from tokenward.store.sql.revocations import SqlRevocationStore
from tokenward.store.sql.sqlite_writer import SqliteWriter

_REVOKE = (
    "INSERT INTO revocations (kind, value, issued_before, expires_at, created_at)"
    " VALUES (?, ?, ?, ?, ?) RETURNING seq"
)


class SqliteRevocationStore(SqlRevocationStore):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writer: SqliteWriter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(sessions, clock)
        self._writer = writer

    async def revoke(self, revocation: Revocation) -> int:
        values = (
            revocation.kind,
            revocation.value,
            revocation.issued_before,
            revocation.expires_at,
            self._clock(),
        )
        row = await self._writer.write(
            lambda connection: connection.execute(_REVOKE, values).fetchone()
        )
        seq = row[0] if row is not None else None
        if not isinstance(seq, int):  # RETURNING always yields the new row
            raise TypeError(f"the database returned {seq!r} as the sequence number")
        return seq
