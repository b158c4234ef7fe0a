"""The SQLite writer on a real file: concurrent writes share commits, a failing one is rolled
back alone, every caller is answered only once its batch is committed, and a writer in another
connection (another process) is waited for, not overrun."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tokenward.store.errors import STORAGE_ERRORS
from tokenward.store.sql import SqliteWriter, sqlite_file

pytestmark = pytest.mark.anyio


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[SqliteWriter]:
    path = tmp_path / "w.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    connection.close()
    writer = SqliteWriter(str(path))
    try:
        yield writer
    finally:
        await writer.aclose()


def _count(path: str) -> int:
    """Read through a connection of its own: what it sees is committed."""
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        connection.close()


def _insert(key: str, fail: bool = False) -> Callable[[sqlite3.Connection], str]:
    def work(connection: sqlite3.Connection) -> str:
        connection.execute("INSERT INTO t VALUES (?, 1)", (key,))
        if fail:
            raise LookupError(key)
        return key

    return work


async def test_concurrent_writes_share_commits_and_each_answer_follows_its_commit(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    path = str(tmp_path / "w.db")
    statements: list[str] = []
    await writer.write(lambda connection: connection.set_trace_callback(statements.append))

    async def insert(n: int) -> int:
        await writer.write(_insert(f"k{n}"))
        return _count(path)  # answered: already visible to another connection

    seen = await asyncio.gather(*(insert(n) for n in range(50)))
    assert all(count >= 1 for count in seen)
    assert _count(path) == 50
    commits = statements.count("COMMIT")
    assert 1 <= commits < 50 / 4  # the first alone, then the rest in a few batches
    # The callback came in inside the first transaction: it saw that one's COMMIT only.
    assert statements.count("BEGIN IMMEDIATE") == commits - 1


async def test_a_failing_write_is_rolled_back_alone_and_its_caller_gets_its_error(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    results = await asyncio.gather(
        *(writer.write(_insert(f"k{n}", fail=n == 3)) for n in range(6)),
        return_exceptions=True,
    )
    assert isinstance(results[3], LookupError)
    assert [r for i, r in enumerate(results) if i != 3] == ["k0", "k1", "k2", "k4", "k5"]
    assert _count(str(tmp_path / "w.db")) == 5


async def test_a_lone_failing_write_keeps_nothing(writer: SqliteWriter, tmp_path: Path) -> None:
    with pytest.raises(LookupError):
        await writer.write(_insert("alone", fail=True))
    assert _count(str(tmp_path / "w.db")) == 0
    assert await writer.write(_insert("next")) == "next"


async def test_another_connections_write_lock_is_waited_for(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    path = str(tmp_path / "w.db")
    other = sqlite3.connect(path, isolation_level=None)  # as another process would hold it
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES ('other', 1)")
    pending = asyncio.ensure_future(writer.write(_insert("mine")))
    await asyncio.sleep(0)  # let it reach BEGIN IMMEDIATE, which now waits on the lock
    assert not pending.done()
    other.execute("COMMIT")
    other.close()
    assert await pending == "mine"
    assert _count(path) == 2


async def test_a_lock_held_past_the_busy_timeout_is_a_storage_error(tmp_path: Path) -> None:
    """Another process that keeps the write lock longer than the busy timeout: the write fails
    with what the edge answers 503 temporarily_unavailable (server/edge.py), nothing is kept, and
    the next write after the lock is gone goes through."""
    path = str(tmp_path / "w.db")
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")  # as the migration leaves the file
        connection.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    connection.close()
    writer = SqliteWriter(path, busy_timeout_ms=50)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(STORAGE_ERRORS) as refused:
            await writer.write(_insert("mine"))
        assert "locked" in str(refused.value)
        other.execute("ROLLBACK")
        assert _count(path) == 0
        assert await writer.write(_insert("after")) == "after"
    finally:
        other.close()
        await writer.aclose()


async def test_reads_see_what_was_committed(writer: SqliteWriter) -> None:
    await writer.write(_insert("k"))
    row = await writer.read(lambda c: c.execute("SELECT v FROM t WHERE k = 'k'").fetchone())
    assert row == (1,)


def _keys() -> Callable[[sqlite3.Connection], list[str]]:
    """A read that notes the thread of each run."""
    threads: list[str] = []

    def work(connection: sqlite3.Connection) -> list[str]:
        threads.append(threading.current_thread().name)
        return [row[0] for row in connection.execute("SELECT k FROM t ORDER BY k")]

    work.threads = threads  # type: ignore[attr-defined]
    return work


async def test_a_read_runs_on_the_event_loops_thread(writer: SqliteWriter) -> None:
    await writer.write(_insert("a"))
    read = _keys()
    assert await writer.read(read) == ["a"]
    assert read.threads == [threading.current_thread().name]  # type: ignore[attr-defined]


async def test_a_read_that_must_wait_for_a_lock_waits_off_the_event_loop(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    """A read that meets another process's lock is handed to the reader thread, which waits
    there, and the loop goes on meanwhile."""
    path = str(tmp_path / "w.db")
    # Another process holds the whole file. A WAL database shuts readers out only this way,
    # taken before the readers opened it.
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("PRAGMA locking_mode=EXCLUSIVE")
    other.execute("BEGIN EXCLUSIVE")
    other.execute("INSERT INTO t VALUES ('b', 1)")
    blocked = _keys()
    pending = asyncio.ensure_future(writer.read(blocked))
    threads = blocked.threads  # type: ignore[attr-defined]
    turns = 0
    while not threads or turns < 20:  # the loop keeps running while the read waits
        await asyncio.sleep(0)
        turns += 1
        assert not pending.done()
    other.execute("COMMIT")
    other.close()
    assert await pending == ["b"]
    assert threads[0] == threading.current_thread().name  # tried here, met the lock
    assert threads[-1].startswith("tokenward-sqlite-read")  # then waited on the reader thread


def test_only_a_sqlite_file_gets_a_writer() -> None:
    assert sqlite_file("sqlite+aiosqlite:////var/lib/tw/tokenward.db") == "/var/lib/tw/tokenward.db"
    assert sqlite_file("sqlite+aiosqlite://") is None
    assert sqlite_file("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_file("postgresql+asyncpg://postgres@127.0.0.1/test") is None


async def test_a_batch_runs_on_the_loop_and_only_its_commit_on_the_writer_thread(
    writer: SqliteWriter,
) -> None:
    """The statements on the loop's thread (no interpreter-lock handover per statement); the
    COMMIT, the fsync, on the writer thread (the loop goes on while the disk syncs)."""
    seen: list[tuple[str, str]] = []

    def trace(statement: str) -> None:
        seen.append((statement.split(maxsplit=1)[0], threading.current_thread().name))

    await writer.write(lambda connection: connection.set_trace_callback(trace))
    await asyncio.gather(*(writer.write(_insert(f"k{n}")) for n in range(3)))
    here = threading.current_thread().name
    assert {thread for verb, thread in seen if verb in ("BEGIN", "INSERT", "SAVEPOINT")} == {here}
    committed_on = {thread for verb, thread in seen if verb == "COMMIT"}
    assert len(committed_on) == 1
    assert committed_on.pop().startswith("tokenward-sqlite-write")


async def test_a_read_during_a_commit_neither_waits_nor_sees_the_batch(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    """While the writing connection is COMMITting on the writer thread, a read on the loop uses
    another connection: it answers at once, with what was committed before."""
    await writer.write(_insert("before"))
    armed, syncing, release = threading.Event(), threading.Event(), threading.Event()

    def trace(statement: str) -> None:
        if statement == "COMMIT" and armed.is_set() and not release.is_set():
            syncing.set()
            release.wait(10)  # the COMMIT held here, on the writer thread

    await writer.write(lambda connection: connection.set_trace_callback(trace))
    armed.set()
    pending = asyncio.ensure_future(writer.write(_insert("during")))
    assert await asyncio.to_thread(syncing.wait, 10)  # the COMMIT has begun, and waits
    keys = await writer.read(_keys())
    assert keys == ["before"]
    assert not pending.done()
    release.set()
    assert await pending == "during"
    assert await writer.read(_keys()) == ["before", "during"]
    assert _count(str(tmp_path / "w.db")) == 2
