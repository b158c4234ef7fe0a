"""The pooled asyncpg connection the PostgreSQL hot path uses (store/sql/pg_driver.py): it comes
from the engine's pool and goes back to it clean; a session the server ended is replaced as on
the ORM's path; and what asyncpg raises on its own is a storage error (503), never a 500."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.store.conftest import open_engine
from tests.store.test_pg_pool import backend_pids, terminate
from tokenward.core.records import FamilyRecord, RefreshRecord
from tokenward.store.errors import STORAGE_ERRORS
from tokenward.store.sql import PgGrantStore, PgUserStore, session_factory
from tokenward.store.sql.pg_driver import driver

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

NOW = 1_800_000_000.0


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with open_engine("postgres", tmp_path) as engine:
        yield engine


async def test_the_connection_is_the_pools_and_reads_the_engines_schema(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        schema = await connection.scalar(text("SELECT current_schema()"))
    async with driver(engine) as asyncpg_connection:
        assert await asyncpg_connection.fetchval("SELECT current_schema()") == schema
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_transaction_left_open_is_not_pooled(engine: AsyncEngine) -> None:
    """A COMMIT or ROLLBACK that never ran (interrupted): SQLAlchemy does not know of the
    transaction, so the connection is discarded rather than handed to the next caller."""
    async with driver(engine) as asyncpg_connection:
        await asyncpg_connection.transaction().start()
        await asyncpg_connection.execute("SELECT 1")
        left = asyncpg_connection
    for _ in range(3):
        async with driver(engine) as asyncpg_connection:
            assert asyncpg_connection is not left
            assert not asyncpg_connection.is_in_transaction()


async def test_ended_sessions_are_replaced_before_a_read(engine: AsyncEngine) -> None:
    grants = PgGrantStore(session_factory(engine), engine, lambda: NOW)
    family = FamilyRecord("f1", "c1", "u1", frozenset({"read"}), (), NOW, NOW + 3600)
    await grants.create(family, RefreshRecord("d1", "f1", NOW, NOW + 3600))
    await terminate(await backend_pids(engine, 3))
    found = await grants.lookup("d1")
    assert found is not None
    assert found[1] == family


async def test_asyncpgs_own_errors_are_storage_errors(engine: AsyncEngine) -> None:
    users = PgUserStore(session_factory(engine), engine)
    async with engine.begin() as connection:
        await connection.execute(text("ALTER TABLE users RENAME TO users_gone"))
    with pytest.raises(STORAGE_ERRORS) as raised:
        await users.get("u1")
    assert type(raised.value).__module__.startswith("asyncpg")  # not wrapped by SQLAlchemy
    async with engine.begin() as connection:
        await connection.execute(text("ALTER TABLE users_gone RENAME TO users"))
    assert await users.get("u1") is None


async def test_a_statement_past_the_command_timeout_is_a_storage_error(
    engine: AsyncEngine,
) -> None:
    started = time.monotonic()
    with pytest.raises(STORAGE_ERRORS):
        async with driver(engine) as asyncpg_connection:
            await asyncpg_connection.execute("SELECT pg_sleep(60)")
    assert time.monotonic() - started < 30  # the engine's command timeout, not the minute
