"""A database or Redis that is briefly unreachable gives 503 temporarily_unavailable, not 500."""

from __future__ import annotations

import sqlite3

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError

from tests.server.conftest import Server
from tokenward.core.records import ClientRecord

pytestmark = pytest.mark.anyio


class Unreachable:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def get(self, client_id: str) -> ClientRecord | None:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT 1", {}, OSError("connection refused")),
        RedisConnectionError("down"),
        TimeoutError(),
        # What the SQLite stores outside SQLAlchemy raise when another process keeps the write
        # lock past the busy timeout (tests/store/test_sqlite_writer.py makes one for real).
        sqlite3.OperationalError("database is locked"),
        sqlite3.OperationalError("disk I/O error"),
    ],
    ids=["database", "redis", "timeout", "sqlite-locked", "sqlite-io"],
)
async def test_unreachable_storage_is_503_with_retry_after(
    server: Server, error: Exception
) -> None:
    healthy = server.services.stores.clients
    server.services.token_endpoint._authenticator._clients = Unreachable(error)  # type: ignore[assignment]
    try:
        response = await server.token()
    finally:
        server.services.token_endpoint._authenticator._clients = healthy
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["retry-after"] == "2"
    assert "Traceback" not in response.text
    assert (await server.token()).status_code == 200  # recovers by itself
