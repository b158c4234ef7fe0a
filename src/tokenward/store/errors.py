"""What a storage backend raises when its server is unreachable: the callers turn these into
503 `temporarily_unavailable` (fail closed) instead of a 500."""

from __future__ import annotations

import sqlite3

from asyncpg import InterfaceError as PgInterfaceError
from asyncpg import InternalClientError as PgClientError
from asyncpg import PostgresError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# PoolTimeoutError: no pooled connection came free in time (a database that stopped answering
# holds every connection); it is neither a DBAPIError nor the built-in TimeoutError.
# sqlite3.Error: what the SQLite stores that bypass SQLAlchemy (store/sql/sqlite_writer.py) raise
# for what DBAPIError wraps on the ORM path -- the write lock still held by another process after
# the busy timeout ("database is locked"), a disk I/O error, a full disk, a corrupt file.
# asyncpg's own errors: what the PostgreSQL stores that use the driver directly raise
# (store/sql/pg_driver.py) for what DBAPIError wraps on the ORM path -- a server error, a
# connection lost or closed mid-statement.
STORAGE_ERRORS = (
    DBAPIError,
    sqlite3.Error,
    PostgresError,
    PgInterfaceError,
    PgClientError,
    DisconnectionError,
    PoolTimeoutError,
    RedisError,
    ConnectionError,
    TimeoutError,
)
