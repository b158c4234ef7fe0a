"""The pooled asyncpg connection itself, for the few statements on the token endpoint's path.

Through SQLAlchemy's ORM a statement on PostgreSQL cost about 300 µs of CPU (statement
construction, compilation cache key, the greenlet bridge, result processing), against about
60 µs for asyncpg's own `fetchrow` on a prepared statement; a refresh rotation is nine statements
(docs/performance.md, "PostgreSQL"). The connection still comes from the engine's pool, so the
pool size, liveness check (store/sql/pg_liveness.py), timeouts and search path are the
engine's; asyncpg keeps each statement prepared per connection.

What asyncpg raises on its own (a server error, a connection lost mid-statement) is in
store/errors.py STORAGE_ERRORS, so an outage answers 503 as on the ORM's path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine


@asynccontextmanager
async def driver(engine: AsyncEngine) -> AsyncIterator[Any]:
    """An asyncpg connection checked out of `engine`'s pool, returned to it after. Reads
    outside a transaction are autocommit; use `connection.transaction()` for a write."""
    async with engine.connect() as connection:
        pooled = await connection.get_raw_connection()
        asyncpg_connection: Any = pooled.driver_connection
        try:
            yield asyncpg_connection
        finally:
            # A transaction of ours still open here (its COMMIT or ROLLBACK was interrupted):
            # SQLAlchemy does not know of it and would pool the connection as it is, so the
            # pool discards it instead.
            if not asyncpg_connection.is_closed() and asyncpg_connection.is_in_transaction():
                await connection.invalidate()
