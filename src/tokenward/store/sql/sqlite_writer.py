"""SQLite's hot path in one thread hop: plain stdlib `sqlite3` on a dedicated thread.

Through SQLAlchemy's aiosqlite adapter every statement is three or four hops to aiosqlite's
thread and back plus the greenlet bridge; a refresh rotation spent ~9 ms of event-loop CPU on
that (docs/performance.md). Here a whole group-commit batch -- BEGIN IMMEDIATE, each write (in
its own SAVEPOINT when the batch holds more than one), COMMIT -- is ONE call into the writer
thread, with a connection of its own to the database file; reads are below.

Reads run on the event loop's own thread first, on a connection of its own that never waits
for a lock: in WAL mode a reader takes none that a writer holds, and a primary-key SELECT on a
warm page cache is a few microseconds, less than the hop to a thread and back (measured in
docs/performance.md). The rare read that would have to wait (another process resetting the
WAL, a recovery) is handed to the reader thread, which waits there for the busy timeout.

What stays as it was (store/sql/group_commit.py): writes that arrive while a batch commits
wait together for the next batch; every caller is answered only after COMMIT returned, with
`synchronous=FULL`; BEGIN IMMEDIATE takes SQLite's one write lock, so other processes on the same
file (the CLI, other servers) queue on it for at most the busy timeout, then fail with "locked".
"""

from __future__ import annotations

import asyncio
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
        self._local = threading.local()  # each thread's own connection
        # Connections of the event loops' threads, closed by aclose from whichever thread.
        self._inline: list[sqlite3.Connection] = []
        self._queue: list[tuple[Work, asyncio.Future[Any]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` outside any transaction (each SELECT sees what was committed when it
        started): on this thread's own connection if no lock is in the way, else on the
        reader thread's. `work` may run twice, so it must only read."""
        try:
            return work(self._inline_connection())
        except sqlite3.OperationalError as exc:
            # The primary code of an extended one (SQLITE_BUSY_RECOVERY is BUSY, 5, in its
            # low byte).
            if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) not in _WAIT:
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
        loop = asyncio.get_running_loop()
        works = [work for work, _ in batch]
        if self._writes is None:
            self._writes = ThreadPoolExecutor(1, thread_name_prefix="tokenward-sqlite-write")
        try:
            outcomes = await loop.run_in_executor(self._writes, self._batch, works)
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

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # isolation_level=None: no implicit BEGIN; transactions are the explicit ones below.
            connection = sqlite3.connect(
                self._path, timeout=self._busy_timeout_ms / 1000, isolation_level=None
            )
            sqlite_pragmas(connection, None)
            connection.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            # FULL is SQLite's default; said here as the durability promise depends on it.
            connection.execute("PRAGMA synchronous=FULL")
            self._local.connection = connection
        return connection

    def _inline_connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "inline", None)
        if connection is None:
            # timeout=0: never wait on the event loop. Nothing else to set for reads: WAL is
            # the file's own mode, set by the writer's connections.
            connection = sqlite3.connect(
                self._path, timeout=0, isolation_level=None, check_same_thread=False
            )
            self._local.inline = connection
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
