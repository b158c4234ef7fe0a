"""Group commit on a real SQLite file: concurrent writes share commits, a failing one is rolled
back alone, and every caller is answered only once its batch is committed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.store.conftest import open_engine
from tokenward.store.sql import GroupCommit, session_factory

pytestmark = pytest.mark.anyio


async def _table(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"))


async def test_concurrent_writes_share_commits_and_all_are_durable(tmp_path: Path) -> None:
    async with open_engine("sqlite", tmp_path, migrated=False) as engine:
        await _table(engine)
        commits: list[int] = []
        event.listen(engine.sync_engine, "commit", lambda _conn: commits.append(1))
        group = GroupCommit(session_factory(engine))

        async def insert(n: int) -> int:
            async def work(session: AsyncSession) -> int:
                await session.execute(text("INSERT INTO t VALUES (:k, :v)"), {"k": f"k{n}", "v": n})
                return n

            return await group.run(work)

        assert await asyncio.gather(*(insert(n) for n in range(50))) == list(range(50))
        assert len(commits) < 50 / 4  # the first alone, then the rest in a few batches
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT count(*) FROM t")) == 50


async def test_a_failing_write_is_rolled_back_alone_and_its_caller_gets_its_error(
    tmp_path: Path,
) -> None:
    async with open_engine("sqlite", tmp_path, migrated=False) as engine:
        await _table(engine)
        group = GroupCommit(session_factory(engine))

        async def write(key: str, fail: bool) -> str:
            async def work(session: AsyncSession) -> str:
                await session.execute(text("INSERT INTO t VALUES (:k, 1)"), {"k": key})
                if fail:
                    raise LookupError(key)
                return key

            return await group.run(work)

        results = await asyncio.gather(
            write("a", False), write("b", True), write("c", False), return_exceptions=True
        )
        assert results[0] == "a"
        assert isinstance(results[1], LookupError)
        assert results[2] == "c"
        async with engine.connect() as connection:
            rows = await connection.scalars(text("SELECT k FROM t ORDER BY k"))
            assert list(rows) == ["a", "c"]


async def test_a_write_alone_in_its_batch_needs_no_savepoint_and_fails_alone(
    tmp_path: Path,
) -> None:
    async with open_engine("sqlite", tmp_path, migrated=False) as engine:
        await _table(engine)
        statements: list[str] = []
        event.listen(
            engine.sync_engine,
            "before_cursor_execute",
            lambda _c, _cur, statement, *_rest: statements.append(statement),
        )
        group = GroupCommit(session_factory(engine))

        async def work(session: AsyncSession) -> None:
            await session.execute(text("INSERT INTO t VALUES ('lone', 1)"))
            raise LookupError("lone")

        with pytest.raises(LookupError, match="lone"):
            await group.run(work)

        async def good(session: AsyncSession) -> str:
            await session.execute(text("INSERT INTO t VALUES ('kept', 1)"))
            return "kept"

        assert await group.run(good) == "kept"
        assert not [s for s in statements if "SAVEPOINT" in s]
        async with engine.connect() as connection:
            rows = await connection.scalars(text("SELECT k FROM t ORDER BY k"))
            assert list(rows) == ["kept"]  # the failed lone write left nothing


async def test_callers_are_answered_only_after_the_commit(tmp_path: Path) -> None:
    async with open_engine("sqlite", tmp_path, migrated=False) as engine:
        await _table(engine)
        committed = asyncio.Event()
        event.listen(engine.sync_engine, "commit", lambda _conn: committed.set())
        group = GroupCommit(session_factory(engine))

        async def work(session: AsyncSession) -> bool:
            await session.execute(text("INSERT INTO t VALUES ('x', 1)"))
            return committed.is_set()

        assert await group.run(work) is False  # the work ran before the commit...
        assert committed.is_set()  # ...and the answer came after it


async def test_a_failed_commit_fails_every_caller_of_the_batch(tmp_path: Path) -> None:
    async with open_engine("sqlite", tmp_path, migrated=False) as engine:
        await _table(engine)

        def refuse(_conn: object) -> None:
            raise OSError("disk full")

        event.listen(engine.sync_engine, "commit", refuse)
        group = GroupCommit(session_factory(engine))

        async def work(session: AsyncSession) -> None:
            await session.execute(text("INSERT INTO t VALUES ('y', 1)"))

        with pytest.raises(OSError, match="disk full"):
            await group.run(work)
