"""Shared Signals streams and SET queues: the same behaviour on memory, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.store.conftest import SQL, open_engine
from tokenward.core.ports import SetQueue, SsfStreams
from tokenward.core.records import SsfStream
from tokenward.store.memory_ssf import MemorySetQueue, MemorySsfStreams
from tokenward.store.sql import SqlSetQueue, SqlSsfStreams, session_factory

pytestmark = pytest.mark.anyio
Stores = tuple[SsfStreams, SetQueue]


@pytest.fixture(params=["memory", *SQL])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    if request.param == "memory":
        yield MemorySsfStreams(), MemorySetQueue(capacity=3)
        return
    async with open_engine(request.param, tmp_path) as engine:
        sessions = session_factory(engine)
        yield SqlSsfStreams(sessions), SqlSetQueue(sessions, capacity=3)


EVERY_FIELD = SsfStream(
    stream_id="s-1",
    owner="rx",
    audience="rx",
    events_requested=("urn:b", "urn:a"),  # order kept
    delivery_method="urn:ietf:rfc:8935",
    endpoint_url="https://rx.example/events",
    created_at=1_800_000_000.25,
    authorization_header="Bearer tok",
    description="Die Küche — 台所",
    status="paused",
    reason="maintenance",
    subjects=('{"format":"opaque","id":"u1"}',),
    verified_at=1_800_000_001.5,
)


async def test_streams_round_trip_and_are_replaced_and_deleted(stores: Stores) -> None:
    streams, _queue = stores
    minimal = SsfStream("s-2", "rx", "rx", (), "urn:ietf:rfc:8936", "https://as/p", 1.0)
    await streams.put(EVERY_FIELD)
    await streams.put(minimal)

    assert await streams.get("s-1") == EVERY_FIELD
    assert await streams.get("s-2") == minimal
    await streams.put(replace(EVERY_FIELD, status="enabled", subjects=()))
    assert (await streams.get("s-1")) == replace(EVERY_FIELD, status="enabled", subjects=())
    assert [s.stream_id for s in await streams.list_all()] == ["s-2", "s-1"]
    assert await streams.delete("s-1") is True
    assert await streams.delete("s-1") is False
    assert await streams.get("s-1") is None


async def test_the_queue_hands_out_in_order_until_acknowledged(stores: Stores) -> None:
    _streams, queue = stores
    for jti in ("j1", "j2", "j3"):
        await queue.enqueue("s-1", jti, f"set-{jti}", 1.0)
    await queue.enqueue("s-1", "j2", "set-j2", 1.0)  # the same SET again: kept once
    await queue.enqueue("s-other", "j9", "set-j9", 1.0)

    first, more = await queue.pending("s-1", 2)
    assert (first, more) == ([("j1", "set-j1"), ("j2", "set-j2")], True)
    assert await queue.ack("s-1", ["j1", "j2", "j9", "unknown"]) == 2
    assert await queue.pending("s-1", 10) == ([("j3", "set-j3")], False)
    assert await queue.pending("s-other", 10) == ([("j9", "set-j9")], False)
    await queue.clear("s-1")
    assert await queue.pending("s-1", 10) == ([], False)


async def test_the_queue_is_bounded_and_drops_the_oldest(stores: Stores) -> None:
    _streams, queue = stores
    for jti in ("j1", "j2", "j3", "j4", "j5"):
        await queue.enqueue("s-1", jti, jti, 1.0)

    held, more = await queue.pending("s-1", 10)

    assert [jti for jti, _ in held] == ["j3", "j4", "j5"]
    assert more is False
