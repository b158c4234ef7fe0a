"""ClientStore.get on a SQLite file, on the event loop's own connection (no thread hop).

Every token, introspection, revocation and authorization request looks its client up. The
read-through cache (store/cached_clients.py) answers for registered clients, but an id nobody
registered is not cached (so made-up ids cannot grow it), and each one went through the ORM on
aiosqlite: about 1.2 ms of CPU per refused request, eight times an issued token, for anyone
who can send a Basic header (docs/performance.md). Here it is one primary-key SELECT through the
`SqliteWriter` (store/sql/sqlite_writer.py). Writes stay on the ORM: they are rare.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import Boolean
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.records import ClientRecord
from tokenward.store.sql.clients import SqlClientStore, record_of
from tokenward.store.sql.models import ClientRow
from tokenward.store.sql.sqlite_writer import SqliteWriter

_COLUMNS = tuple(column.name for column in ClientRow.__table__.columns)
# SQLite hands booleans back as 0 and 1; the ORM converts them, and so must we.
_BOOLEANS = frozenset(
    column.name for column in ClientRow.__table__.columns if isinstance(column.type, Boolean)
)
_GET = f"SELECT {', '.join(_COLUMNS)} FROM clients WHERE client_id = ?"  # noqa: S608 - names from the model


class SqliteClientStore(SqlClientStore):
    def __init__(self, sessions: async_sessionmaker[AsyncSession], writer: SqliteWriter) -> None:
        super().__init__(sessions)
        self._writer = writer

    async def get(self, client_id: str) -> ClientRecord | None:
        row = await self._writer.read(
            lambda connection: connection.execute(_GET, (client_id,)).fetchone()
        )
        return None if row is None else record_of(_row(row))


def _row(values: tuple[Any, ...]) -> SimpleNamespace:
    fields = dict(zip(_COLUMNS, values, strict=True))
    for name in _BOOLEANS:
        fields[name] = bool(fields[name])
    return SimpleNamespace(**fields)
