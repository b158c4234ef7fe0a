"""The read-through client cache: fresh for its ttl, dropped at once by a write through it."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from tokenward.core.records import ClientRecord
from tokenward.store.cached_clients import CachedClientStore
from tokenward.store.memory import MemoryClientStore


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingStore(MemoryClientStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, client_id: str) -> ClientRecord | None:
        self.reads += 1
        return await super().get(client_id)


CLIENT = ClientRecord(
    client_id="c1",
    auth_method="client_secret_basic",
    grant_types=("client_credentials",),
    scopes=frozenset({"read"}),
    created_at=1.0,
    secret_digest="d1",
)


def _setup() -> tuple[CountingStore, CachedClientStore, Clock]:
    inner, clock = CountingStore(), Clock()
    return inner, CachedClientStore(inner, ttl=2.0, clock=clock), clock


def test_a_client_is_read_once_per_ttl_and_other_writers_are_seen_after_it() -> None:
    async def scenario() -> None:
        inner, cached, clock = _setup()
        await inner.put(CLIENT)
        assert await cached.get("c1") == CLIENT
        assert await cached.get("c1") == CLIENT
        assert inner.reads == 1
        await inner.put(replace(CLIENT, disabled=True))  # another process's write
        assert (await cached.get("c1")) == CLIENT
        clock.now += 2.0
        changed = await cached.get("c1")
        assert changed is not None
        assert changed.disabled
        assert inner.reads == 2

    asyncio.run(scenario())


def test_writes_through_the_cache_are_seen_at_once() -> None:
    async def scenario() -> None:
        inner, cached, _ = _setup()
        await cached.put(CLIENT)
        assert await cached.get("c1") == CLIENT
        await cached.put(replace(CLIENT, secret_digest="d2"))
        rotated = await cached.get("c1")
        assert rotated is not None
        assert rotated.secret_digest == "d2"
        assert await cached.delete("c1")
        assert await cached.get("c1") is None
        assert inner.reads == 3

    asyncio.run(scenario())


def test_unknown_ids_are_not_kept() -> None:
    async def scenario() -> None:
        inner, cached, _ = _setup()
        for n in range(100):
            assert await cached.get(f"nobody-{n}") is None
        assert inner.reads == 100
        assert cached._entries == {}
        await inner.put(CLIENT)  # registered after a miss: found on the next request
        assert await cached.get("c1") == CLIENT

    asyncio.run(scenario())


def test_forget_drops_one_entry_or_all() -> None:
    async def scenario() -> None:
        inner, cached, _ = _setup()
        await inner.put(CLIENT)
        await cached.get("c1")
        cached.forget("c1")
        await cached.get("c1")
        cached.forget()
        await cached.get("c1")
        assert inner.reads == 3

    asyncio.run(scenario())


class SlowStore(CountingStore):
    """Each read takes its snapshot at once, then waits until the test lets it answer."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def get(self, client_id: str) -> ClientRecord | None:
        self.reads += 1
        snapshot = await MemoryClientStore.get(self, client_id)
        await self.release.wait()
        return snapshot


async def _waiting(store: SlowStore, reads: int) -> None:
    """Until `reads` reads have started (polled, not slept for)."""
    for _ in range(1000):
        if store.reads >= reads:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{store.reads} reads started, not {reads}")


def test_concurrent_misses_share_one_read() -> None:
    async def scenario() -> None:
        inner, clock = SlowStore(), Clock()
        cached = CachedClientStore(inner, ttl=2.0, clock=clock)
        await inner.put(CLIENT)
        gets = [asyncio.ensure_future(cached.get("c1")) for _ in range(50)]
        await _waiting(inner, 1)
        inner.release.set()
        assert await asyncio.gather(*gets) == [CLIENT] * 50
        assert inner.reads == 1
        assert await cached.get("c1") == CLIENT  # and the result was kept
        assert inner.reads == 1

    asyncio.run(scenario())


def test_a_caller_that_gives_up_does_not_fail_the_others() -> None:
    async def scenario() -> None:
        inner, clock = SlowStore(), Clock()
        cached = CachedClientStore(inner, ttl=2.0, clock=clock)
        await inner.put(CLIENT)
        first = asyncio.ensure_future(cached.get("c1"))
        await _waiting(inner, 1)
        second = asyncio.ensure_future(cached.get("c1"))
        await asyncio.sleep(0)
        first.cancel()
        inner.release.set()
        assert await second == CLIENT
        assert first.cancelled()
        assert inner.reads == 1

    asyncio.run(scenario())


def test_a_write_during_a_read_keeps_the_older_result_out_of_the_cache() -> None:
    async def scenario() -> None:
        inner, clock = SlowStore(), Clock()
        cached = CachedClientStore(inner, ttl=2.0, clock=clock)
        await inner.put(CLIENT)
        before = asyncio.ensure_future(cached.get("c1"))
        await _waiting(inner, 1)
        await cached.put(replace(CLIENT, disabled=True))  # through the cache, mid-read
        inner.release.set()
        assert await before == CLIENT  # its read began before the write
        after = await cached.get("c1")
        assert after is not None
        assert after.disabled  # not the read that began before the write
        assert inner.reads == 2

    asyncio.run(scenario())
