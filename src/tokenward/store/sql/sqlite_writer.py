"""SQLite's hot path: plain stdlib `sqlite3`, the statements on the event loop, the fsync off it.

Through SQLAlchemy's aiosqlite adapter every statement is three or four hops to aiosqlite's
thread and back plus the greenlet bridge; a refresh rotation spent ~9 ms of event-loop CPU on
that (docs/performance.md). Here a whole group-commit batch -- BEGIN IMMEDIATE, each write (in
its own SAVEPOINT when the batch holds more than one) -- runs on the event loop's thread, on the
connection its reads use, and only the COMMIT (the fsync) is handed to the writer thread:

- one thread hop per batch, not one interpreter-lock handover per statement: with the whole
  batch on a thread, each statement released and re-took the interpreter lock against a busy
  event loop, and that cost a third of a rotation's CPU (docs/performance.md, "Writes on the
  event loop");
- the connection that writes also reads, so its page cache stays warm: SQLite drops a
  connection's cache when ANOTHER connection commits, and a cold primary-key SELECT costs about
  twice a warm one;
- the loop goes on serving while the disk syncs, so a slow disk slows writes, not the rest.

BEGIN IMMEDIATE on the loop never waits: its connection has no busy timeout. When another
process (the CLI, another worker) holds the write lock, the whole batch goes to the writer
thread instead, on a connection of its own that waits for the lock up to the busy timeout.

Reads run on the loop's thread on the same connection, outside any transaction (nothing awaits
between BEGIN and the hand-over of COMMIT). While a COMMIT is on the writer thread that
connection is busy, so a read then uses a second connection of the loop's. A read that would
have to wait for a lock (another process resetting the WAL, a recovery) is handed to the reader
thread, which waits there for the busy timeout.

What stays as it was (store/sql/group_commit.py): writes that arrive while a batch commits
wait together for the next batch; every caller is answered only after COMMIT returned, with
`synchronous=FULL`; BEGIN IMMEDIATE takes SQLite's one write lock, so other processes on the same
file queue on it for at most the busy timeout, then fail with "locked".
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

from tokenward.store.sql.engine import SQLITE_BUSY_TIMEOUT_MS, sqlite_pragmas

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]
MAX_BATCH = 128  # bounds how long one transaction holds the write lock
Outcome = tuple[BaseException | None, Any]
_WAIT = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)  # a read that would have to wait


def sqlite_file(url: str) -> str | None:
    """The database file a `sqlite+aiosqlite:///path` URL names; None for any other URL and
    for an in-memory database (a second connection would see another database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


class SqliteWriter:
    """Runs synchronous work on a SQLite file: writes in group-committed batches, reads alone."""

    def __init__(self, path: str, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms  # how long a write waits for another's lock
        # One thread each (made on first use): a read never waits behind a batch's fsync.
        self._writes: ThreadPoolExecutor | None = None
        self._reads: ThreadPoolExecutor | None = None
        self._local = threading.local()  # each thread's own connections
        # Connections of the event loops' threads, closed by aclose from whichever thread.
        self._inline: list[sqlite3.Connection] = []
        # The loop's writing connection is COMMITting on the writer thread: reads go around it.
        self._committing = False
        self._queue: list[tuple[Work, asyncio.Future[Any]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` outside any transaction (each SELECT sees what was committed when it
        started): on this thread's own connection if no lock is in the way, else on the
        reader thread's. `work` may run twice, so it must only read."""
        try:
            connection = self._aside_connection() if self._committing else self._own_connection()
            return work(connection)
        except sqlite3.OperationalError as exc:
            if not _must_wait(exc):
                raise
        loop = asyncio.get_running_loop()
        if self._reads is None:
            self._reads = ThreadPoolExecutor(1, thread_name_prefix="tokenward-sqlite-read")
        result: T = await loop.run_in_executor(self._reads, self._read, work)
        return result

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` in a write transaction (SQLite's write lock held); its result once that
        transaction is committed. If it raises, its caller gets the error and nothing it
        wrote is kept."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((work, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def aclose(self) -> None:
        """Finish what is queued, then close the threads' connections on their own threads,
        end the threads, and close the event loops' connections. Like `AsyncEngine.dispose`,
        a later call opens them again."""
        while self._draining is not None:
            await asyncio.shield(self._draining)
        loop = asyncio.get_running_loop()
        executors, self._writes, self._reads = (self._writes, self._reads), None, None
        for executor in executors:
            if executor is not None:
                await loop.run_in_executor(executor, self._close)
                executor.shutdown(wait=True)
        inline, self._inline = self._inline, []
        self._local = threading.local()  # the closed connections are forgotten by every thread
        for connection in inline:
            connection.close()

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._commit(batch)
        finally:
            self._draining = None

    async def _commit(self, batch: list[tuple[Work, asyncio.Future[Any]]]) -> None:
        works = [work for work, _ in batch]
        try:
            outcomes = await self._commit_here(works)
            if outcomes is None:  # another process holds the write lock: wait for it there
                outcomes = await self._on_writer_thread(self._batch, works)
        except Exception as exc:  # noqa: BLE001 - BEGIN, COMMIT or a lone work failed: nothing kept
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), (error, value) in zip(batch, outcomes, strict=True):
            if future.done():  # its caller was cancelled; the write stands, as it would alone
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    async def _commit_here(self, works: list[Work]) -> list[Outcome] | None:
        """BEGIN IMMEDIATE and the works on the loop's own connection, COMMIT on the writer
        thread; None, with nothing done, when the write lock is held elsewhere."""
        connection = self._own_connection()
        try:
            if not getattr(self._local, "writes", False):
                # As the writer thread's connection, but for the busy timeout: none (above).
                # Set on the first write, not when the connection opens: setting `synchronous`
                # reads the file, which may be locked, and reads must not fail on that.
                connection.execute("PRAGMA foreign_keys=ON")
                connection.execute("PRAGMA synchronous=FULL")
                self._local.writes = True
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _must_wait(exc):
                return None
            raise
        try:
            outcomes = _run(connection, works)
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        self._committing = True
        try:
            await self._on_writer_thread(_commit, connection)
        finally:
            self._committing = False
        return outcomes

    async def _on_writer_thread(self, call: Callable[[T], Any], argument: T) -> Any:
        """`call(argument)` on the writer thread. If the caller is cancelled meanwhile, this
        still waits for the call to end before raising: the connection it uses must not be
        touched (nor closed) while it runs."""
        if self._writes is None:
            self._writes = ThreadPoolExecutor(1, thread_name_prefix="tokenward-sqlite-write")
        running = asyncio.get_running_loop().run_in_executor(self._writes, call, argument)
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            while not running.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([running])
            raise

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # isolation_level=None: no implicit BEGIN; transactions are the explicit ones below.
            connection = sqlite3.connect(
                self._path, timeout=self._busy_timeout_ms / 1000, isolation_level=None
            )
            sqlite_pragmas(connection, None, busy_timeout_ms=self._busy_timeout_ms)
            # FULL is SQLite's default; said here as the durability promise depends on it.
            connection.execute("PRAGMA synchronous=FULL")
            self._local.connection = connection
        return connection

    def _own_connection(self) -> sqlite3.Connection:
        """The loop thread's connection: it reads, and writes each batch but its COMMIT."""
        connection: sqlite3.Connection | None = getattr(self._local, "own", None)
        if connection is None:
            connection = self._local.own = self._loop_connection()
        return connection

    def _aside_connection(self) -> sqlite3.Connection:
        """The loop thread's connection for reads while its own is COMMITting."""
        connection: sqlite3.Connection | None = getattr(self._local, "aside", None)
        if connection is None:
            connection = self._local.aside = self._loop_connection()
        return connection

    def _loop_connection(self) -> sqlite3.Connection:
        # timeout=0: never wait on the event loop. check_same_thread=False: its COMMIT runs on
        # the writer thread, while nothing else uses it. WAL is the file's own mode, set when
        # the database was opened for migration.
        connection = sqlite3.connect(
            self._path, timeout=0, isolation_level=None, check_same_thread=False
        )
        self._inline.append(connection)
        return connection

    def _close(self) -> None:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            self._local.connection = None
            connection.close()

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return work(self._connection())

    def _batch(self, works: list[Work]) -> list[Outcome]:
        """One transaction on the writer's thread: BEGIN IMMEDIATE, the works, COMMIT."""
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            outcomes = _run(connection, works)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return outcomes


def _must_wait(error: sqlite3.OperationalError) -> bool:
    """Whether `error` says a lock held elsewhere is in the way (by the primary code of an
    extended one: SQLITE_BUSY_RECOVERY is BUSY, 5, in its low byte)."""
    return (getattr(error, "sqlite_errorcode", 0) & 0xFF) in _WAIT


def _commit(connection: sqlite3.Connection) -> None:
    """COMMIT (the fsync), or ROLLBACK if it fails: either way no transaction is left open."""
    try:
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _run(connection: sqlite3.Connection, works: list[Work]) -> list[Outcome]:
    if len(works) == 1:
        # Alone in its batch: no SAVEPOINT. If it raises, the whole transaction is rolled
        # back and its caller gets that error.
        return [(None, works[0](connection))]
    outcomes: list[Outcome] = []
    for work in works:
        connection.execute("SAVEPOINT work")
        try:
            value = work(connection)
        except Exception as exc:  # noqa: BLE001 - handed to its own caller
            connection.execute("ROLLBACK TO work")
            connection.execute("RELEASE work")
            outcomes.append((exc, None))
            continue
        connection.execute("RELEASE work")
        outcomes.append((None, value))
    return outcomes
