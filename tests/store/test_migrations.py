"""The schema: the migrations build exactly the models on both databases, migrating is
idempotent and safe to race, and what SQLite stores survives closing and reopening the file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Integer, MetaData, Table, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import FrozenClock
from tests.store.conftest import SQL, open_engine, sql_backend, sqlite_url
from tests.store.test_access_token_contract import full_token
from tests.store.test_client_contract import EVERY_FIELD
from tests.store.test_keystore_contract import key
from tests.store.test_revocation_contract import jti
from tests.store.test_user_contract import user
from tokenward.store.sql import alembic_config, create_engine, migrate
from tokenward.store.sql.models import Base

pytestmark = pytest.mark.anyio

HEAD = "0020_srvworkers"
TABLES = {
    "signing_keys",
    "revocations",
    "access_tokens",
    "clients",
    "users",
    # 0002: the flow stores
    "sessions",
    "authorization_codes",
    "grant_families",
    "refresh_tokens",
    "minted_tokens",
    "device_codes",
    "consents",
    "replay_markers",
    # 0010: stored signing choices (tokenward keys migrate)
    "signing_choices",
    # 0007_par: pushed authorization requests
    "pushed_requests",
    # 0012: back-channel logout's recipients, Shared Signals streams and their SETs
    "session_participants",
    "ssf_streams",
    "ssf_set_queue",
    # 0014: dynamic client registration's initial and registration access tokens
    "initial_access_tokens",
    "registration_access_tokens",
    # 0013: second factors
    "totp_factors",
    "recovery_codes",
    "passkeys",
    # 0017: the sign-in throttle's failures, shared by `serve --workers N`
    "signin_failures",
}


def schema_differences(connection: Connection, metadata: MetaData = Base.metadata) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, metadata))


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


def test_the_migrations_have_one_head() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_heads() == [HEAD]


@pytest.mark.parametrize("database", SQL)
async def test_migrate_builds_exactly_the_models(database: str, tmp_path: Path) -> None:
    async with open_engine(database, tmp_path, migrated=False) as engine:
        async with engine.connect() as connection:
            assert await connection.run_sync(table_names) == set()

        await migrate(engine)

        async with engine.connect() as connection:
            assert await connection.run_sync(table_names) == TABLES
            assert await connection.run_sync(schema_differences) == []
        assert await current_revision(engine) == HEAD


@pytest.mark.parametrize("database", SQL)
async def test_the_comparison_would_notice_a_difference(database: str, tmp_path: Path) -> None:
    # A guard on the test above: an empty diff must mean "same", not "compared nothing".
    drifted = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    Table("extra", drifted, Column("id", Integer, primary_key=True))
    drifted.tables["users"].append_column(Column("nickname", Integer, nullable=True))

    async with open_engine(database, tmp_path) as engine, engine.connect() as connection:
        differences = await connection.run_sync(schema_differences, drifted)

    kinds = {(diff[0], getattr(diff[-1], "name", None)) for diff in differences}
    assert kinds == {("add_table", "extra"), ("add_column", "nickname")}


@pytest.mark.parametrize("database", SQL)
async def test_migrating_again_changes_nothing(database: str, tmp_path: Path) -> None:
    async with open_engine(database, tmp_path) as engine:
        stores = sql_backend(database, engine, FrozenClock())
        await stores.users.put(user("u1", "alice"))

        await migrate(engine)

        assert await current_revision(engine) == HEAD
        assert await stores.users.get("u1") == user("u1", "alice")


@pytest.mark.parametrize("database", SQL)
async def test_servers_starting_together_both_migrate_safely(database: str, tmp_path: Path) -> None:
    async with open_engine(database, tmp_path, migrated=False) as engine:
        twin = await twin_of(engine)
        try:
            # Bounded: without the migration lock this can deadlock instead of failing.
            with anyio.fail_after(60):
                await asyncio.gather(migrate(engine), migrate(twin), migrate(engine))
        finally:
            await twin.dispose()
        assert await current_revision(engine) == HEAD
        async with engine.connect() as connection:
            assert await connection.run_sync(schema_differences) == []


async def twin_of(engine: AsyncEngine) -> AsyncEngine:
    """A second engine (another server, in effect) on the same database and schema."""
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "sqlite":
        return create_engine(url)
    async with engine.connect() as connection:
        schema = (await connection.exec_driver_sql("SHOW search_path")).scalar()
    assert isinstance(schema, str)
    return create_engine(url, schema=schema)


@pytest.mark.parametrize("database", SQL)
async def test_downgrade_to_base_removes_every_table(database: str, tmp_path: Path) -> None:
    async with open_engine(database, tmp_path) as engine:
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: command.downgrade(alembic_config(sync), "base"))
        async with engine.connect() as connection:
            assert await connection.run_sync(table_names) == set()

        await migrate(engine)

        async with engine.connect() as connection:
            assert await connection.run_sync(schema_differences) == []


async def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(
    tmp_path: Path,
) -> None:
    async with open_engine("sqlite", tmp_path) as engine, engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert (await pragma("PRAGMA journal_mode")).scalar() == "wal"
        assert (await pragma("PRAGMA foreign_keys")).scalar() == 1
        assert (await pragma("PRAGMA busy_timeout")).scalar() == 10_000


async def test_sqlite_data_survives_closing_and_reopening_the_file(tmp_path: Path) -> None:
    clock = FrozenClock()
    engine = create_engine(sqlite_url(tmp_path))
    try:
        await migrate(engine)
        before = sql_backend("sqlite", engine, clock)
        await before.keys.save([key("k1")])
        seq = await before.revocations.revoke(jti("j1"))
        await before.access_tokens.save("d1", full_token())
        await before.clients.put(EVERY_FIELD)
        await before.users.put(user("u1", "alice"))
    finally:
        await engine.dispose()

    reopened = create_engine(sqlite_url(tmp_path))
    try:
        await migrate(reopened)  # what a restart does: a no-op on a current schema
        after = sql_backend("sqlite", reopened, clock)
        assert list(await after.keys.load_all()) == [key("k1")]
        assert list(await after.revocations.since(0)) == [(seq, jti("j1"))]
        assert await after.revocations.revoke(jti("j2")) > seq  # the sequence carries on
        assert await after.access_tokens.get("d1") == full_token()
        assert await after.clients.get(EVERY_FIELD.client_id) == EVERY_FIELD
        assert await after.users.by_username("alice") == user("u1", "alice")
    finally:
        await reopened.dispose()


def test_create_engine_refuses_what_it_cannot_serve() -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        create_engine("mysql+aiomysql://localhost/tokenward")
    with pytest.raises(ValueError, match="SQLite has no schemas"):
        create_engine("sqlite+aiosqlite:///x.db", schema="tw")


async def test_a_revocation_seq_is_never_reused_after_the_newest_rows_go(tmp_path: Path) -> None:
    # AUTOINCREMENT: a plain SQLite rowid would hand out max(seq)+1 again after a purge of
    # the newest rows, and a mirror already past that number would skip the new entry.
    async with open_engine("sqlite", tmp_path) as engine:
        stores = sql_backend("sqlite", engine, FrozenClock())
        first = await stores.revocations.revoke(jti("j1"))
        second = await stores.revocations.revoke(jti("j2"))
        async with engine.begin() as connection:
            await connection.execute(text("DELETE FROM revocations WHERE seq = :s"), {"s": second})

        assert await stores.revocations.revoke(jti("j3")) > second > first
