"""Single-use values that anyone can present -- a device code (public clients poll without a
secret), a pushed request's handle at /authorize, an initial access token at the registration
endpoint -- are refused without SQLite's write lock when nobody issued them: made-up values
cannot queue the server's refreshes and code exchanges behind them. A real one is still used up
under the lock. Each test holds the write lock from another connection, as the CLI or a second
server would, and presents a made-up value."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.store.conftest import open_engine, sqlite_writer
from tokenward.core.records import DeviceRecord
from tokenward.store.sql import (
    SqlInitialAccessTokens,
    SqliteDeviceStore,
    SqlitePushedRequestStore,
    SqlPushedRequestStore,
    session_factory,
    sqlite_file,
)

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0
RECORD = DeviceRecord(
    device_digest="d1",
    user_code="ABCDEFGH",
    client_id="tv",
    scopes=frozenset({"read"}),
    audience=("https://api.example",),
    created_at=NOW,
    expires_at=NOW + 600,
    interval=5,
)


@contextmanager
def write_lock(engine: AsyncEngine) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock until the block ends (or commits)."""
    path = sqlite_file(engine.url.render_as_string(hide_password=False))
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield other
    finally:
        other.close()


@asynccontextmanager
async def answered_at_once() -> AsyncIterator[None]:
    started = time.monotonic()
    yield
    assert time.monotonic() - started < 1  # not after the 10 s busy timeout


async def test_an_unknown_pushed_request_handle(tmp_path: Path) -> None:
    async with open_engine("sqlite", tmp_path) as engine, sqlite_writer(engine) as writer:
        assert writer is not None
        for pushed in (
            SqlPushedRequestStore(session_factory(engine), lambda: NOW),  # in-memory SQLite's
            SqlitePushedRequestStore(session_factory(engine), writer, lambda: NOW),  # a file's
        ):
            with write_lock(engine):
                async with answered_at_once():
                    assert await pushed.take("never-issued", "web", NOW) is None


async def test_an_unknown_initial_access_token(tmp_path: Path) -> None:
    async with open_engine("sqlite", tmp_path) as engine:
        initial = SqlInitialAccessTokens(session_factory(engine))
        with write_lock(engine):
            async with answered_at_once():
                assert await initial.spend("never-issued", NOW) is None


async def test_an_unknown_device_code_and_a_real_one(
    tmp_path: Path,
) -> None:
    async with open_engine("sqlite", tmp_path) as engine, sqlite_writer(engine) as writer:
        assert writer is not None
        devices = SqliteDeviceStore(session_factory(engine), writer, lambda: NOW)
        await devices.save(RECORD)
        with write_lock(engine) as other:
            async with answered_at_once():
                assert await devices.poll("never-issued", NOW) == (None, False)
            # A real code needs the lock: its poll waits for it, then goes through.
            waiting = asyncio.ensure_future(devices.poll("d1", NOW + 1))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            other.execute("COMMIT")
            record, too_fast = await waiting
        assert record == RECORD
        assert not too_fast
        again, too_fast = await devices.poll("d1", NOW + 2)  # 1 s later: too fast
        assert again is not None
        assert again.last_poll_at == NOW + 1
        assert too_fast
