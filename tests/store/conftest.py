"""One fixture, `backend`, that yields a fresh set of stores on memory, SQLite or PostgreSQL.

PostgreSQL tests share one database across xdist workers: each test migrates into its own
schema (tw_<random>) and drops it afterwards, so parallel workers never see each other's rows.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import FrozenClock
from tokenward.core.ports import (
    AccessTokenStore,
    ClientStore,
    CodeStore,
    ConsentStore,
    DeviceStore,
    GrantStore,
    KeyStore,
    PushedRequestStore,
    RevocationStore,
    SessionStore,
    UserStore,
)
from tokenward.oauth.client_auth import ReplayCache
from tokenward.store import memory, memory_flows
from tokenward.store.sql import (
    GroupCommit,
    PgAccessTokenStore,
    PgCodeStore,
    PgDeviceStore,
    PgGrantStore,
    PgUserStore,
    SqlAccessTokenStore,
    SqlClientStore,
    SqlCodeStore,
    SqlConsentStore,
    SqlDeviceStore,
    SqlGrantStore,
    SqliteAccessTokenStore,
    SqliteClientStore,
    SqliteCodeStore,
    SqliteDeviceStore,
    SqliteGrantStore,
    SqlitePushedRequestStore,
    SqliteReplayCache,
    SqliteRevocationStore,
    SqliteUserStore,
    SqliteWriter,
    SqlKeyStore,
    SqlPushedRequestStore,
    SqlReplayCache,
    SqlRevocationStore,
    SqlSessionStore,
    SqlUserStore,
    create_engine,
    migrate,
    session_factory,
    sqlite_file,
)

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_URL = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/test"
PG_DOWN = (
    f"PostgreSQL at {PG_HOST}:{PG_PORT} is not reachable: start it with "
    "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "or run under CI=true"
)


@dataclass
class Backend:
    """A fresh, empty set of stores; `engine` is None for memory."""

    name: str
    clock: FrozenClock
    keys: KeyStore
    revocations: RevocationStore
    access_tokens: AccessTokenStore
    clients: ClientStore
    users: UserStore
    engine: AsyncEngine | None = None


def memory_backend(clock: FrozenClock) -> Backend:
    return Backend(
        "memory",
        clock,
        memory.MemoryKeyStore(),
        memory.MemoryRevocationStore(),
        memory.MemoryAccessTokenStore(clock),
        memory.MemoryClientStore(),
        memory.MemoryUserStore(),
    )


def sql_backend(
    name: str, engine: AsyncEngine, clock: FrozenClock, writer: SqliteWriter | None = None
) -> Backend:
    """`writer` (a SQLite file) answers `UserStore.get`, `ClientStore.get` and the access
    tokens, as deploy/wiring.py does."""
    sessions = session_factory(engine)
    access_tokens: AccessTokenStore = SqlAccessTokenStore(sessions, clock)
    users: UserStore = SqlUserStore(sessions)
    revocations: RevocationStore = SqlRevocationStore(sessions, clock)
    if writer is not None:
        access_tokens = SqliteAccessTokenStore(sessions, writer, clock)
        users = SqliteUserStore(sessions, writer)
        revocations = SqliteRevocationStore(sessions, writer, clock)
    elif name == "postgres":  # the driver's point reads, as deploy/wiring.py wires them
        access_tokens = PgAccessTokenStore(sessions, engine, clock)
        users = PgUserStore(sessions, engine)
    return Backend(
        name,
        clock,
        SqlKeyStore(sessions),
        revocations,
        access_tokens,
        SqlClientStore(sessions) if writer is None else SqliteClientStore(sessions, writer),
        users,
        engine,
    )


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'tokenward.db'}"


@cache
def _postgres_reachable() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=2):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    if not _postgres_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail(PG_DOWN)
        pytest.skip(PG_DOWN)


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A new, empty schema in the shared test database, dropped with everything in it."""
    require_postgres()
    schema = f"tw_{secrets.token_hex(6)}"
    admin = create_engine(PG_URL)
    try:
        async with admin.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield schema
        finally:
            async with admin.begin() as connection:
                await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        await admin.dispose()


@asynccontextmanager
async def open_engine(
    name: str, tmp_path: Path, *, migrated: bool = True
) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh database of kind `name` (sqlite or postgres), disposed after."""
    async with AsyncExitStack() as stack:
        if name == "sqlite":
            engine = create_engine(sqlite_url(tmp_path))
        else:
            schema = await stack.enter_async_context(postgres_schema())
            engine = create_engine(PG_URL, schema=schema)
        stack.push_async_callback(engine.dispose)  # runs before the schema is dropped
        if migrated:
            await migrate(engine)
        yield engine


SQL = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@asynccontextmanager
async def sqlite_writer(engine: AsyncEngine) -> AsyncIterator[SqliteWriter | None]:
    """The engine's SQLite file's writer (deploy/wiring.py makes one), or None, closed after."""
    path = sqlite_file(engine.url.render_as_string(hide_password=False))
    if path is None:
        yield None
        return
    writer = SqliteWriter(path)
    try:
        yield writer
    finally:
        await writer.aclose()


@pytest.fixture(params=["memory", *SQL])
async def backend(
    request: pytest.FixtureRequest, clock: FrozenClock, tmp_path: Path
) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield memory_backend(clock)
        return
    async with open_engine(request.param, tmp_path) as engine, sqlite_writer(engine) as writer:
        yield sql_backend(request.param, engine, clock, writer)


@pytest.fixture(params=SQL)
async def sql(
    request: pytest.FixtureRequest, clock: FrozenClock, tmp_path: Path
) -> AsyncIterator[Backend]:
    """Only the durable backends: for what memory cannot fail at (transactions, schema)."""
    async with open_engine(request.param, tmp_path) as engine, sqlite_writer(engine) as writer:
        yield sql_backend(request.param, engine, clock, writer)


@dataclass
class Flows:
    """A fresh, empty set of the flow stores (and a replay cache); `engine` is None for memory."""

    name: str
    clock: FrozenClock
    sessions: SessionStore
    codes: CodeStore
    grants: GrantStore
    devices: DeviceStore
    consents: ConsentStore
    replay: ReplayCache
    pushed: PushedRequestStore
    engine: AsyncEngine | None = None


def memory_flows_backend(clock: FrozenClock) -> Flows:
    grants = memory_flows.MemoryGrantStore()
    return Flows(
        "memory",
        clock,
        memory_flows.MemorySessionStore(),
        memory_flows.MemoryCodeStore(grants),
        grants,
        memory_flows.MemoryDeviceStore(),
        memory_flows.MemoryConsentStore(),
        memory.MemoryReplayCache(clock),
        memory_flows.MemoryPushedRequestStore(clock),
    )


def sql_flows_backend(
    name: str, engine: AsyncEngine, clock: FrozenClock, writer: SqliteWriter | None = None
) -> Flows:
    """`writer` (a SQLite file) takes the grant and code writes, as deploy/wiring.py does;
    without it SQLite shares commits through GroupCommit (in-memory SQLite in the wiring).
    PostgreSQL's grants use the driver directly, as in the wiring."""
    sessions = session_factory(engine)
    group = GroupCommit(sessions) if name == "sqlite" else None
    codes: CodeStore = SqlCodeStore(sessions, clock, group=group)
    grants: GrantStore = SqlGrantStore(sessions, clock, group=group)
    devices: DeviceStore = SqlDeviceStore(sessions, clock)
    replay: ReplayCache = SqlReplayCache(sessions, clock)
    pushed: PushedRequestStore = SqlPushedRequestStore(sessions, clock)
    if name == "postgres":
        codes = PgCodeStore(sessions, engine, clock)
        grants = PgGrantStore(sessions, engine, clock)
        devices = PgDeviceStore(sessions, engine, clock)
    if writer is not None:
        codes = SqliteCodeStore(sessions, writer, clock)
        grants = SqliteGrantStore(sessions, writer, clock)
        devices = SqliteDeviceStore(sessions, writer, clock)
        replay = SqliteReplayCache(sessions, writer, clock)
        pushed = SqlitePushedRequestStore(sessions, writer, clock)
    return Flows(
        name,
        clock,
        SqlSessionStore(sessions, clock),
        codes,
        grants,
        devices,
        SqlConsentStore(sessions),
        replay,
        pushed,
        engine,
    )


@pytest.fixture(params=["memory", *SQL])
async def flows(
    request: pytest.FixtureRequest, clock: FrozenClock, tmp_path: Path
) -> AsyncIterator[Flows]:
    if request.param == "memory":
        yield memory_flows_backend(clock)
        return
    async with open_engine(request.param, tmp_path) as engine, sqlite_writer(engine) as writer:
        yield sql_flows_backend(request.param, engine, clock, writer)


@pytest.fixture(params=SQL)
async def sql_flows(
    request: pytest.FixtureRequest, clock: FrozenClock, tmp_path: Path
) -> AsyncIterator[Flows]:
    """Only the durable flow backends: purging, constraints, shared state."""
    async with open_engine(request.param, tmp_path) as engine, sqlite_writer(engine) as writer:
        yield sql_flows_backend(request.param, engine, clock, writer)


async def count_rows(flows: Flows, table: str) -> int:
    assert flows.engine is not None
    async with flows.engine.connect() as connection:
        return int(await connection.scalar(text(f"SELECT count(*) FROM {table}")) or 0)  # noqa: S608
