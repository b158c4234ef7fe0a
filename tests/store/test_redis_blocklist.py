"""The shared IP blocklist: two nodes (two clients, one prefix) see each other's blocks and
unblocks within a few refresh intervals, the longer block wins, entries expire, a node's own
changes survive a refresh racing them, and an outage neither raises nor loses what was queued."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import orjson
import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from tests.conftest import FrozenClock
from tests.store.redis_server import need_shared_redis, private_redis
from tokenward.core.blocklist import BlockEntry
from tokenward.store import redis_blocklist
from tokenward.store.redis_blocklist import RedisBlocklist

pytestmark = [pytest.mark.anyio, pytest.mark.redis]
INTERVAL = 0.05  # refresh interval: "within a second" becomes "within a few of these"
IP = "203.0.113.7"


async def eventually(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@dataclass
class Nodes:
    """Two nodes of one deployment on the machine's Redis, under a prefix of this test's own."""

    a: RedisBlocklist
    b: RedisBlocklist
    client: Redis
    key: str
    clock: FrozenClock

    async def start(self) -> None:
        await self.a.start()
        await self.b.start()

    async def stored(self) -> dict[str, dict[str, object]]:
        raw = cast(dict[bytes, bytes], await self.client.hgetall(self.key))
        return {field.decode(): orjson.loads(value) for field, value in raw.items()}


def node(url: str, prefix: str, clock: FrozenClock) -> RedisBlocklist:
    return RedisBlocklist(
        Redis.from_url(url), prefix, clock=clock, refresh_interval=INTERVAL, owns_client=True
    )


@pytest.fixture
async def nodes(clock: FrozenClock) -> AsyncIterator[Nodes]:
    url = need_shared_redis()
    prefix = f"tw-test:{secrets.token_hex(6)}:"
    client = Redis.from_url(url)
    both = Nodes(
        node(url, prefix, clock), node(url, prefix, clock), client, prefix + "blocked", clock
    )
    yield both
    await both.a.stop()
    await both.b.stop()
    await client.delete(both.key)
    await client.aclose()


async def test_a_block_at_one_node_is_refused_at_the_other(nodes: Nodes) -> None:
    await nodes.start()
    entry = nodes.a.block(IP, 600, "burst", "monitor:burst")
    assert entry == BlockEntry(IP, nodes.clock.now + 600, "burst", "monitor:burst")
    assert nodes.a.is_blocked(IP)  # at once, locally
    await eventually(lambda: nodes.b.is_blocked(IP))
    assert list(nodes.b.entries()) == [entry]
    assert await nodes.stored() == {
        IP: {"until": nodes.clock.now + 600, "reason": "burst", "by": "monitor:burst"}
    }
    assert not nodes.b.is_blocked("203.0.113.8")


async def test_an_unblock_at_the_other_node_is_seen_at_the_first(nodes: Nodes) -> None:
    await nodes.start()
    nodes.a.block(IP, 600, "burst", "monitor:burst")
    await eventually(lambda: nodes.b.is_blocked(IP))
    assert nodes.b.unblock(IP)
    assert not nodes.b.is_blocked(IP)
    await eventually(lambda: not nodes.a.is_blocked(IP))
    assert await nodes.stored() == {}
    assert not nodes.b.unblock(IP)  # nothing known here any more


async def test_an_unblock_of_a_block_not_yet_seen_still_reaches_redis(nodes: Nodes) -> None:
    nodes.a.block(IP, 600, "burst", "monitor:burst")
    await nodes.a.flush()
    assert not nodes.b.unblock(IP)  # b has not refreshed: unknown here, but queued anyway
    await nodes.b.flush()
    assert await nodes.stored() == {}


async def test_the_longer_of_two_concurrent_blocks_wins(nodes: Nodes) -> None:
    now = nodes.clock.now
    nodes.a.block(IP, 100, "short", "monitor:a")
    nodes.b.block(IP, 1000, "long", "monitor:b")
    nodes.a.block("198.51.100.1", 1000, "long", "monitor:a")
    nodes.b.block("198.51.100.1", 100, "short", "monitor:b")
    await asyncio.gather(nodes.a.flush(), nodes.b.flush())  # one script each, serialised
    await asyncio.gather(nodes.a.refresh(), nodes.b.refresh())
    for blocklist in (nodes.a, nodes.b):
        assert {e.ip: e.until for e in blocklist.entries()} == {
            IP: now + 1000,
            "198.51.100.1": now + 1000,
        }
    stored = await nodes.stored()
    assert {ip: value["until"] for ip, value in stored.items()} == {
        IP: now + 1000,
        "198.51.100.1": now + 1000,
    }
    # One node later blocking for less keeps the longer until, with its own reason (as memory).
    nodes.b.block(IP, 10, "again", "admin:ops")
    await nodes.b.flush()
    assert (await nodes.stored())[IP] == {"until": now + 1000, "reason": "again", "by": "admin:ops"}


async def test_expired_entries_vanish_everywhere(nodes: Nodes) -> None:
    await nodes.start()
    nodes.a.block(IP, 30, "burst", "monitor:burst")
    await eventually(lambda: nodes.b.is_blocked(IP))
    nodes.clock.advance(30)
    assert not nodes.a.is_blocked(IP)  # expiry is local: no refresh needed
    assert not nodes.b.is_blocked(IP)
    assert nodes.b.entries() == []

    async def hash_empty() -> bool:
        return await nodes.client.hlen(nodes.key) == 0

    for _ in range(200):
        if await hash_empty():
            break
        await asyncio.sleep(0.01)
    assert await hash_empty()
    nodes.a.block(IP, 30, "burst", "monitor:burst")  # and blocks again afterwards
    await eventually(lambda: nodes.b.is_blocked(IP))


async def test_an_expired_entry_rewritten_meanwhile_is_not_deleted(nodes: Nodes) -> None:
    nodes.a.block(IP, 10, "burst", "monitor:burst")
    await nodes.a.flush()
    nodes.clock.advance(11)
    await nodes.a.refresh()  # reads it expired: its deletion goes with a's next call
    nodes.b.block(IP, 60, "again", "monitor:burst")
    await nodes.b.flush()  # rewritten before a deletes
    await nodes.a.flush()
    assert (await nodes.stored())[IP]["reason"] == "again"
    await nodes.a.refresh()
    assert nodes.a.is_blocked(IP)


async def test_a_change_survives_its_own_refresh_racing_it(nodes: Nodes) -> None:
    refreshing = asyncio.create_task(nodes.a.refresh())
    await asyncio.sleep(0)  # the refresh has taken its snapshot and waits for Redis
    nodes.a.block(IP, 600, "burst", "monitor:burst")
    await refreshing
    assert not await nodes.client.hexists(nodes.key, IP)  # the race did happen
    assert nodes.a.is_blocked(IP)
    assert nodes.a.queued == 1
    await nodes.a.refresh()
    assert nodes.a.queued == 0
    assert IP in await nodes.stored()

    refreshing = asyncio.create_task(nodes.a.refresh())
    await asyncio.sleep(0)
    nodes.a.unblock(IP)
    await refreshing  # read before the unblock was written: stale, must not bring it back
    assert await nodes.client.hexists(nodes.key, IP)
    assert not nodes.a.is_blocked(IP)
    await nodes.a.refresh()
    assert await nodes.stored() == {}


async def test_changes_under_a_running_loop_are_never_undone(nodes: Nodes) -> None:
    await nodes.start()
    rng = random.Random(5)
    expected: set[str] = set()
    for index in range(40):
        ip = f"198.51.100.{index % 12}"
        if rng.random() < 0.6:
            nodes.a.block(ip, 600, "burst", "monitor:burst")
            expected.add(ip)
        else:
            nodes.a.unblock(ip)
            expected.discard(ip)
        await asyncio.sleep(rng.random() * INTERVAL)
        assert {e.ip for e in nodes.a.entries()} == expected
    await eventually(lambda: {e.ip for e in nodes.b.entries()} == expected)
    assert set(await nodes.stored()) == expected


async def test_canonical_addresses(nodes: Nodes) -> None:
    await nodes.start()
    entry = nodes.a.block("::ffff:10.0.0.1", 600, "spread", "admin:ops")
    assert entry.ip == "10.0.0.1"
    await eventually(lambda: nodes.b.is_blocked("10.0.0.1"))
    assert nodes.b.is_blocked("::ffff:10.0.0.1")
    assert set(await nodes.stored()) == {"10.0.0.1"}
    nodes.a.block("2001:DB8:0::1", 600, "spread", "admin:ops")
    await eventually(lambda: nodes.b.is_blocked("[2001:db8::1]"))
    assert nodes.b.unblock("::ffff:10.0.0.1")
    await eventually(lambda: not nodes.a.is_blocked("10.0.0.1"))


async def test_the_queue_is_bounded_dropping_the_oldest(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_blocklist, "QUEUE_LIMIT", 5)
    for index in range(8):
        nodes.a.block(f"198.51.100.{index}", 600, "burst", "monitor:burst")
    assert (nodes.a.queued, nodes.a.dropped) == (5, 3)
    assert len(nodes.a.entries()) == 8  # the local view keeps them all
    await nodes.a.flush()
    assert set(await nodes.stored()) == {f"198.51.100.{index}" for index in range(3, 8)}


async def test_the_local_view_is_bounded_keeping_the_longest(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_blocklist, "MAX_ENTRIES", 3)
    for index in range(3):
        nodes.a.block(f"198.51.100.{index}", 100 + index, "burst", "monitor:burst")
    nodes.b.block("198.51.100.9", 50, "burst", "monitor:burst")
    nodes.b.block("198.51.100.8", 500, "burst", "monitor:burst")
    assert {e.ip for e in nodes.a.entries()} == {f"198.51.100.{index}" for index in range(3)}
    nodes.a.block("198.51.100.3", 10, "burst", "monitor:burst")  # the first to go: not kept
    nodes.a.block("198.51.100.4", 200, "burst", "monitor:burst")  # evicts the soonest, .0
    assert {e.ip for e in nodes.a.entries()} == {"198.51.100.1", "198.51.100.2", "198.51.100.4"}
    await asyncio.gather(nodes.a.flush(), nodes.b.flush())
    assert len(await nodes.stored()) == 7  # Redis holds everything
    await nodes.a.refresh()
    assert [e.ip for e in nodes.a.entries()] == ["198.51.100.8", "198.51.100.4", "198.51.100.2"]


async def test_stop_ends_the_loop_whenever_it_comes(nodes: Nodes) -> None:
    """Python 3.11's wait_for (under redis-py's socket timeout) can swallow a cancellation
    racing a finished write: stop() must end the loop all the same."""
    url = need_shared_redis()
    rng = random.Random(11)
    for _ in range(60):
        blocklist = RedisBlocklist(
            Redis.from_url(url),
            nodes.key[: -len("blocked")],
            refresh_interval=0.0005,
            owns_client=True,
        )
        blocklist.block(IP, 600, "burst", "monitor:burst")
        await blocklist.start()
        await asyncio.sleep(rng.random() * 0.005)
        loop = blocklist._task
        stopping = asyncio.create_task(blocklist.stop())
        await asyncio.wait({stopping}, timeout=3)
        while loop is not None and not loop.done():  # failed: end it anyway, not to hang
            loop.cancel()
            await asyncio.wait({loop}, timeout=0.05)
        assert stopping.done(), "stop() did not end the loop"
        await stopping
    assert IP in await nodes.stored()


async def test_an_outage_keeps_answering_queues_and_heals(
    tmp_path: Path, clock: FrozenClock
) -> None:
    with private_redis(str(tmp_path)) as server, capture_logs() as logs:
        a, b = node(server.url, "tw:", clock), node(server.url, "tw:", clock)
        await a.start()
        await b.start()
        a.block("198.51.100.1", 600, "burst", "monitor:burst")
        await eventually(lambda: b.is_blocked("198.51.100.1"))
        server.stop()
        a.block(IP, 600, "burst", "monitor:burst")
        assert a.is_blocked(IP)  # at once, Redis or not
        await asyncio.sleep(6 * INTERVAL)  # several failing refreshes
        assert a.queued == 1
        assert b.is_blocked("198.51.100.1")  # the last view still answers
        assert not b.is_blocked(IP)
        server.start()  # a fresh, empty server: only what was queued comes back
        await eventually(lambda: b.is_blocked(IP), seconds=3.0)
        assert a.queued == 0
        await a.stop()
        await b.stop()
    warnings = [e for e in logs if e["event"] == "ip_blocklist_unavailable"]
    assert len(warnings) == 2  # once per node for the whole outage, not once per refresh
    assert {e["error"] for e in warnings} <= {"ConnectionError", "TimeoutError"}
    assert len([e for e in logs if e["event"] == "ip_blocklist_recovered"]) == 2
