"""What a storage backend raises when its server is unreachable: the callers turn these into
503 `temporarily_unavailable` (fail closed) instead of a 500."""

from __future__ import annotations

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, DisconnectionError

STORAGE_ERRORS = (DBAPIError, DisconnectionError, RedisError, ConnectionError, TimeoutError)
