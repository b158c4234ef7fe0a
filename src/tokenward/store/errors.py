"""What a storage backend raises when its server is unreachable: the callers turn these into
503 `temporarily_unavailable` (fail closed) instead of a 500."""

from __future__ import annotations

import sqlite3

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# PoolTimeoutError: no pooled connection came free in time (a database that stopped answering
# holds every connection); it is neither a DBAPIError nor the built-in TimeoutError.
# sqlite3.Error: what the SQLite stores that bypass SQLAlchemy (store/sql/sqlite_writer.py) raise
# for what DBAPIError wraps on the ORM path -- the write lock still held by another process after
# the busy timeout ("database is locked"), a disk I/O error, a full disk, a corrupt file.
STORAGE_ERRORS = (
    DBAPIError,
    sqlite3.Error,
    DisconnectionError,
    PoolTimeoutError,
    RedisError,
    ConnectionError,
    TimeoutError,
)
