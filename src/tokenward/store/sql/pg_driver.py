"""The pooled asyncpg connection itself, for the few statements on the token endpoint's path.

Through SQLAlchemy's ORM a statement on PostgreSQL cost about 300 µs of CPU (statement
construction, compilation cache key, the greenlet bridge, result processing), against about
60 µs for asyncpg's own `fetchrow` on a prepared statement; a refresh rotation is nine statements
(docs/performance.md, "PostgreSQL"). The connection still comes from the engine's pool, so the
pool size, liveness check (store/sql/pg_liveness.py, on the pool's checkout and checkin events),
timeouts and search path are the engine's; asyncpg keeps each statement prepared per connection.
It is taken from the pool itself, not through `engine.connect()`: the engine's `Connection`
around it (its greenlet hops, its events, its own close) cost a third of a checkout and is not
used here (docs/performance.md, "PostgreSQL checkouts").

What asyncpg raises on its own (a server error, a connection lost mid-statement, a refused
connect) is in store/errors.py STORAGE_ERRORS, so an outage answers 503 as on the ORM's path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn


@asynccontextmanager
async def driver(engine: AsyncEngine) -> AsyncIterator[Any]:
    """An asyncpg connection checked out of `engine`'s pool, returned to it after. Reads
    outside a transaction are autocommit; use `connection.transaction()` for a write."""
    pooled = await greenlet_spawn(engine.sync_engine.pool.connect)
    asyncpg_connection: Any = pooled.driver_connection
    try:
        yield asyncpg_connection
    finally:
        # A transaction of ours still open here (its COMMIT or ROLLBACK was interrupted):
        # the pool's reset on return does not know of it (it was begun on asyncpg, not
        # through SQLAlchemy), so the connection is discarded instead of pooled as it is.
        if not asyncpg_connection.is_closed() and asyncpg_connection.is_in_transaction():
            await greenlet_spawn(pooled.invalidate)
        else:
            await greenlet_spawn(pooled.close)
