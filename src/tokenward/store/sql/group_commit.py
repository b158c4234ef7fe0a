"""Group commit for SQLite: concurrent write transactions share one COMMIT, hence one fsync.

SQLite has one writer at a time and, with `synchronous=FULL`, every COMMIT waits for the disk;
a refresh rotation or code exchange writes twice, so on a shared disk the token endpoint was
bound by fsyncs, not by CPU (docs/performance.md). Here the writes that arrive while a batch
is committing wait together and run back to back in the next batch: one BEGIN IMMEDIATE, each
write in its own SAVEPOINT (a failing one is rolled back alone and its caller gets its error),
one COMMIT. Every caller is answered only after that COMMIT returned, so what it was told is
durable exactly as before: the durability promise does not change, only how many answers one
fsync pays for.

On a SQLite file the token endpoint's stores use store/sql/sqlite_writer.py instead, the same
batching in one thread hop per batch; this one serves an in-memory SQLite (and its tests).

PostgreSQL commits concurrent transactions in parallel and holds row locks per transaction, so
its stores write as before (no GroupCommit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.store.sql.models import lock_for_writing

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[Any]]
MAX_BATCH = 128  # bounds how long one transaction holds the write lock


class GroupCommit:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._queue: list[tuple[Work, asyncio.Future[Any]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `work` in a write transaction (SQLite's write lock held); return its result
        once the transaction is committed. Its exception, if it raises, and nothing it wrote
        is kept."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((work, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._commit(batch)
        finally:
            self._draining = None

    async def _commit(self, batch: list[tuple[Work, asyncio.Future[Any]]]) -> None:
        try:
            async with self._sessions.begin() as session:
                await lock_for_writing(session)
                outcomes = await _run(session, batch)
        except BaseException as exc:  # COMMIT, BEGIN or a lone work failed: nothing is kept
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
            if not isinstance(exc, Exception):
                raise
            return
        for future, error, value in outcomes:
            if future.done():  # its caller was cancelled; the write stands, as it would alone
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)


Outcome = tuple[asyncio.Future[Any], BaseException | None, Any]


async def _run(
    session: AsyncSession, batch: list[tuple[Work, asyncio.Future[Any]]]
) -> list[Outcome]:
    """Each work of the batch in the open transaction, with its result or its error."""
    if len(batch) == 1:
        # Alone in its batch: no SAVEPOINT (two round trips fewer). If it raises, the whole
        # transaction is rolled back and its caller gets that error (GroupCommit._commit).
        work, future = batch[0]
        return [(future, None, await work(session))]
    outcomes: list[Outcome] = []
    for work, future in batch:
        try:
            async with session.begin_nested():
                outcomes.append((future, None, await work(session)))
        except Exception as exc:  # noqa: BLE001 - handed to its own caller
            outcomes.append((future, exc, None))
    return outcomes


async def write(
    sessions: async_sessionmaker[AsyncSession],
    group: GroupCommit | None,
    work: Callable[[AsyncSession], Awaitable[T]],
) -> T:
    """`work` in a write transaction of its own, or in the group's next batch."""
    if group is not None:
        return await group.run(work)
    async with sessions.begin() as session:
        await lock_for_writing(session)
        return await work(session)
