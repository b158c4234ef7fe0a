"""The PostgreSQL pool: a session the server ended (a restart, a failover) is replaced at
checkout, so no request sees it fail, whether the connection was used a moment ago or sat idle;
and concurrent requests reuse the pool's connections rather than open and close their own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.store.conftest import PG_URL, open_engine
from tokenward.store.sql import SqlClientStore, create_engine, pg_liveness, session_factory
from tokenward.store.sql.engine import PG_POOL_SIZE

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


async def backend_pids(engine: AsyncEngine, count: int) -> set[int]:
    """The server processes behind `count` pooled connections, all checked out at once."""
    ready: list[int] = []
    hold = asyncio.Event()

    async def pid() -> None:
        async with engine.connect() as connection:
            ready.append(int(await connection.scalar(text("SELECT pg_backend_pid()")) or 0))
            await hold.wait()

    tasks = [asyncio.create_task(pid()) for _ in range(count)]
    for _ in range(500):
        if len(ready) == count:
            break
        await asyncio.sleep(0.01)
    hold.set()
    await asyncio.gather(*tasks)
    return set(ready)


async def terminate(pids: set[int]) -> None:
    """End those sessions from another connection, as a restart would, and wait until the
    server has let them go."""
    admin = create_engine(PG_URL)
    try:
        async with admin.connect() as connection:
            for pid in pids:
                await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(500):
                alive = await connection.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                    {"pids": list(pids)},
                )
                if not alive:
                    return
                await asyncio.sleep(0.01)
        raise AssertionError("the server did not end the sessions")
    finally:
        await admin.dispose()


@pytest.mark.parametrize("ping_after_idle", [0.0, 3600.0], ids=["pinged", "trusted"])
async def test_ended_sessions_are_replaced_unseen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ping_after_idle: float
) -> None:
    monkeypatch.setattr(pg_liveness, "PING_AFTER_IDLE", ping_after_idle)
    async with open_engine("postgres", tmp_path) as engine:
        clients = SqlClientStore(session_factory(engine))
        pids = await backend_pids(engine, 3)
        assert len(pids) == 3

        await terminate(pids)

        # Every pooled connection is dead; each read must still answer.
        answers = await asyncio.gather(*(clients.get("nobody") for _ in range(5)))
        assert answers == [None] * 5
        assert not pids & await backend_pids(engine, 3)


async def test_concurrent_reads_reuse_the_pools_connections(tmp_path: Path) -> None:
    async with open_engine("postgres", tmp_path) as engine:

        async def backend() -> int:
            async with engine.connect() as connection:
                return int(await connection.scalar(text("SELECT pg_backend_pid()")) or 0)

        seen: set[int] = set()
        for _ in range(20):
            seen |= set(await asyncio.gather(*(backend() for _ in range(8))))

        # Eight at a time fit in the pool (PG_POOL_SIZE): no connection is opened per request.
        assert len(seen) <= PG_POOL_SIZE
