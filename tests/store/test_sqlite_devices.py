"""Device-code polls on a SQLite file (store/sql/sqlite_devices.py): a code nobody issued is
answered without SQLite's write lock, so a public client sending made-up device codes cannot
queue the server's other writes behind its polls; a real code still polls under the lock."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from tests.store.conftest import open_engine, sqlite_writer
from tokenward.core.records import DeviceRecord
from tokenward.store.sql import SqliteDeviceStore, session_factory, sqlite_file

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


async def test_an_unknown_code_is_answered_while_another_process_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    async with open_engine("sqlite", tmp_path) as engine, sqlite_writer(engine) as writer:
        assert writer is not None
        devices = SqliteDeviceStore(session_factory(engine), writer, lambda: NOW)
        await devices.save(RECORD)
        path = sqlite_file(engine.url.render_as_string(hide_password=False))
        assert path is not None
        other = sqlite3.connect(path, isolation_level=None)  # as the CLI or another server
        try:
            other.execute("BEGIN IMMEDIATE")
            started = time.monotonic()
            assert await devices.poll("never-issued", NOW) == (None, False)
            assert time.monotonic() - started < 1  # not the 10 s busy timeout
            # A real code needs the lock: its poll waits for it, then goes through.
            waiting = asyncio.ensure_future(devices.poll("d1", NOW + 1))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            other.execute("COMMIT")
            record, too_fast = await waiting
        finally:
            other.close()
        assert record == RECORD
        assert not too_fast
        again, too_fast = await devices.poll("d1", NOW + 2)  # 1 s later: too fast
        assert again is not None
        assert again.last_poll_at == NOW + 1
        assert too_fast
