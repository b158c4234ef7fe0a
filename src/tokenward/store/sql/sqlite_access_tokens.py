"""AccessTokenStore on a SQLite file, in one thread hop (or none) per call.

The same table and documents as store/sql/access_tokens.py, through a `SqliteWriter`
(store/sql/sqlite_writer.py): a lookup runs on the event loop's own connection, a save or delete
joins a group-committed write batch. Through the ORM on aiosqlite, an introspection whose token
was not in the cache (a revoked, expired or unknown one) cost about 0.95 ms of CPU against
0.08 ms for a cached active token (docs/performance.md): every resource server that introspects
a revoked token again and again paid that, on every request.

Rows are interchangeable with the ORM's: the document is the JSON text SQLAlchemy's JSON type
writes on SQLite, so a row written by one is read by the other (the CLI uses the ORM).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.claims import AccessToken
from tokenward.store.sql import access_tokens as sql_access_tokens
from tokenward.store.sql.access_tokens import SqlAccessTokenStore, document_of, token_of
from tokenward.store.sql.sqlite_writer import SqliteWriter

_GET = "SELECT token FROM access_tokens WHERE digest = ? AND expires_at > ?"
_SAVE = (
    "INSERT INTO access_tokens (digest, token, expires_at) VALUES (?, ?, ?)"
    " ON CONFLICT (digest) DO UPDATE SET token = excluded.token,"
    " expires_at = excluded.expires_at"
)
_PURGE = "DELETE FROM access_tokens WHERE expires_at <= ?"
_DELETE = "DELETE FROM access_tokens WHERE digest = ? RETURNING digest"


class SqliteAccessTokenStore(SqlAccessTokenStore):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writer: SqliteWriter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(sessions, clock)
        self._writer = writer

    async def save(self, digest: str, token: AccessToken) -> None:
        values = (digest, json.dumps(document_of(token)), float(token.exp))
        self._saves += 1
        purge = self._saves % sql_access_tokens.PURGE_EVERY == 0
        now = self._clock()

        def work(connection: sqlite3.Connection) -> None:
            connection.execute(_SAVE, values)
            if purge:
                connection.execute(_PURGE, (now,))

        await self._writer.write(work)

    async def get(self, digest: str) -> AccessToken | None:
        # Expired at exp, as in memory and in the ORM store.
        arguments = (digest, self._clock())
        row = await self._writer.read(
            lambda connection: connection.execute(_GET, arguments).fetchone()
        )
        return None if row is None else token_of(json.loads(row[0]))

    async def delete(self, digest: str) -> bool:
        def work(connection: sqlite3.Connection) -> bool:
            return connection.execute(_DELETE, (digest,)).fetchone() is not None

        return await self._writer.write(work)
