"""What a storage backend raises when its server is unreachable: the callers turn these into
503 `temporarily_unavailable` (fail closed) instead of a 500."""

from __future__ import annotations

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# PoolTimeoutError: no pooled connection came free in time (a database that stopped answering
# holds every connection); it is neither a DBAPIError nor the built-in TimeoutError.
STORAGE_ERRORS = (
    DBAPIError,
    DisconnectionError,
    PoolTimeoutError,
    RedisError,
    ConnectionError,
    TimeoutError,
)
