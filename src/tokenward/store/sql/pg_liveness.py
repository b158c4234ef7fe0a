"""A pooled PostgreSQL connection is checked before use, for what that check costs.

SQLAlchemy's `pool_pre_ping` on asyncpg sends BEGIN, a ping and ROLLBACK at every checkout:
three round trips, about 270 µs of CPU, which was 40% of a point read (docs/performance.md).
The promise it kept stays: a server restart or failover does not surface as a failed request.
At checkout:

- a connection whose socket the server closed (a restart or failover ends every session) is
  replaced, with no round trip: asyncpg sees the close as it happens;
- a connection idle for more than `PING_AFTER_IDLE` seconds is pinged as before, and replaced if
  the ping fails: a quiet pool may have lost its server without being told (a dropped NAT
  entry, a host that vanished);
- a connection used within that time, and still open, is trusted: under load that is nearly
  every checkout.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

PING_AFTER_IDLE = 1.0  # seconds
_IDLE_SINCE = "tokenward_idle_since"


def watch_liveness(engine: AsyncEngine) -> None:
    """Check the engine's pooled connections at checkout, as the module says."""
    pool = engine.sync_engine.pool
    event.listen(pool, "checkin", _checked_in)
    event.listen(pool, "checkout", _checked_out)


def _checked_in(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info[_IDLE_SINCE] = time.monotonic()


def _checked_out(
    dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    if dbapi_connection.driver_connection.is_closed():
        raise exc.DisconnectionError("the server closed this connection")
    idle_since = record.info.get(_IDLE_SINCE)
    if idle_since is not None and time.monotonic() - idle_since <= PING_AFTER_IDLE:
        return
    try:
        dbapi_connection.ping()
    except Exception as error:  # any failure means: use another connection
        raise exc.DisconnectionError("the connection did not answer a ping") from error
