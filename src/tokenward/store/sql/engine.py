"""Engines, sessions and migrations for the two databases tokenward runs on.

`sqlite+aiosqlite:///path` is the embedded default; `postgresql+asyncpg://...` is production.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from tokenward.store.sql.pg_liveness import watch_liveness

MIGRATIONS = "tokenward.store.sql:migrations"  # a package resource: no alembic.ini on disk
# How long a SQLite writer waits for another writer's lock before failing with "locked".
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Any fixed bigint names a PostgreSQL advisory lock; this one is the ASCII of "tokenw".
_MIGRATION_LOCK = 0x746F6B656E77


PG_CONNECT_TIMEOUT = 2.0  # seconds to open a connection
PG_COMMAND_TIMEOUT = 4.0  # seconds one statement may take (point lookups take ms)
PG_POOL_TIMEOUT = 3.0  # seconds to wait for a free pooled connection
PG_POOL_SIZE = 10  # TOKENWARD_DATABASE_POOL_SIZE


def create_engine(
    url: str, *, schema: str | None = None, echo: bool = False, pool_size: int = PG_POOL_SIZE
) -> AsyncEngine:
    """An async engine for a SQLite file or a PostgreSQL database.

    `schema` (PostgreSQL only) becomes the connection's search_path, so one database can hold
    several independent tokenward schemas (tests run each in its own). `pool_size` (PostgreSQL
    only): the connections kept open; as many again may open under a burst, and are closed
    when handed back. Requests that need the database at once beyond the pool each open and
    close a connection: with SQLAlchemy's default of 5, eight concurrent requests opened 75
    connections a second (docs/performance.md).
    """
    if url.startswith("sqlite+aiosqlite:"):
        if schema is not None:
            raise ValueError("SQLite has no schemas; leave `schema` unset")
        engine = _create_async_engine(url, echo=echo)
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    if url.startswith("postgresql+asyncpg:"):
        # Bounded waits, as for Redis (store/redis_client.py): a database that stops answering
        # costs a request seconds and then a 503, not a minute and then a 500.
        connect_args: dict[str, Any] = {
            "timeout": PG_CONNECT_TIMEOUT,
            "command_timeout": PG_COMMAND_TIMEOUT,
        }
        if schema is not None:
            connect_args["server_settings"] = {"search_path": schema}
        engine = _create_async_engine(
            url,
            echo=echo,
            pool_size=pool_size,
            pool_timeout=PG_POOL_TIMEOUT,
            connect_args=connect_args,
        )
        # A server restart or failover must not surface as one failed request; checked at a
        # fraction of pool_pre_ping's cost (store/sql/pg_liveness.py).
        watch_liveness(engine)
        return engine
    raise ValueError(
        "unsupported database URL: use sqlite+aiosqlite:///path or postgresql+asyncpg://..."
    )


def sqlite_pragmas(
    dbapi_connection: DBAPIConnection | sqlite3.Connection,
    _record: ConnectionPoolEntry | None,
    *,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
) -> None:
    cursor = dbapi_connection.cursor()
    # First, so that even switching to WAL waits for a lock instead of failing: writers queue
    # rather than fail at once (SQLite allows one writer at a time).
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    # WAL: readers never block the writer and the writer never blocks readers. Switching needs
    # the database to itself and does not always wait on busy_timeout (two servers starting at
    # once), so it is retried for a bounded while; a database already in WAL skips it.
    cursor.execute("PRAGMA journal_mode")
    mode = cursor.fetchone()
    if mode is None or mode[0] != "wal":
        for attempt in range(200):
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:
                if attempt == 199:
                    raise
                time.sleep(0.05)
    cursor.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite, on in PostgreSQL
    # synchronous stays FULL (the default): a revocation must survive a power cut.
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: an async session cannot reload an expired attribute implicitly
    # (that would be hidden I/O), so loaded rows must stay readable after the commit.
    return async_sessionmaker(engine, expire_on_commit=False)


async def reading(session: AsyncSession) -> None:
    """Make `session` read outside a transaction; call it before its first statement.

    A lone SELECT is atomic by itself; in a transaction it costs PostgreSQL two more round trips
    (BEGIN, and ROLLBACK when the session closes), which doubled the CPU of an introspection
    that missed the cache (docs/performance.md). Not for a read whose result a later write of
    the same session depends on: that needs the transaction."""
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def alembic_config(connection: Connection | None = None) -> Config:
    """The Alembic configuration, built in code; `connection` is what env.py migrates."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the database to the newest schema. Safe to call from many processes at once."""
    async with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            # Take the write lock before Alembic reads its version table: a second process
            # waits here, then finds the schema at head. It also makes the DDL one transaction.
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            # PostgreSQL DDL is transactional already; the lock stops two servers starting at
            # once from both creating the same tables (one would fail on "already exists").
            lock = text("SELECT pg_advisory_xact_lock(:key)")
            await connection.execute(lock, {"key": _MIGRATION_LOCK})
        await connection.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")
