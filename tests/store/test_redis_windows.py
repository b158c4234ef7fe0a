"""Redis usage windows against MemoryWindows: the same calls give the same answers, every key
expires, and two clients (two gateways) sharing a prefix see one window per key."""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from tests.store.redis_server import need_shared_redis
from tokenward.core.windows import MAX_GAP_BUCKETS, MAX_HITS, MAX_MEMBERS, RateSample
from tokenward.store.memory_windows import MemoryWindows
from tokenward.store.redis_windows import RedisWindows

pytestmark = [pytest.mark.anyio, pytest.mark.redis]
START = 1_800_000_000.0


@dataclass
class Shared:
    """The machine's Redis under a prefix of this test's own, removed afterwards."""

    url: str
    prefix: str
    client: Redis

    def windows(self, client: Redis | None = None) -> RedisWindows:
        return RedisWindows(client or self.client, self.prefix)

    async def names(self) -> list[bytes]:
        return [name async for name in self.client.scan_iter(match=self.prefix + "*")]


@pytest.fixture
async def shared() -> AsyncIterator[Shared]:
    url = need_shared_redis()
    prefix = f"tw-test:{secrets.token_hex(6)}:"
    client = Redis.from_url(url)
    yield Shared(url, prefix, client)
    async for name in client.scan_iter(match=prefix + "*"):
        await client.delete(name)
    await client.aclose()


class Twin:
    """Feeds every call to MemoryWindows and RedisWindows and asserts equal answers."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.memory = MemoryWindows()
        self.redis = shared.windows()
        self.calls = 0

    async def spread(self, key: str, member: str, now: float, window: float) -> Sequence[str]:
        expected = await self.memory.spread(key, member, now, window)
        got = await self.redis.spread(key, member, now, window)
        assert list(got) == list(expected), (self.calls, key, member, now, window)
        await self._expiring(["s:", "st:"], key, bool(got))
        return got

    async def burst(self, key: str, now: float, window: float, count: int) -> int:
        expected = await self.memory.burst(key, now, window, count)
        got = await self.redis.burst(key, now, window, count)
        assert got == expected, (self.calls, key, now, window, count)
        await self._expiring(["b:", "bt:"], key, bool(got))  # counts here are positive
        return got

    async def rate(
        self, key: str, now: float, bucket: float, alpha: float, count: int
    ) -> RateSample:
        expected = await self.memory.rate(key, now, bucket, alpha, count)
        got = await self.redis.rate(key, now, bucket, alpha, count)
        where = (self.calls, key, now, bucket, alpha, count)
        assert (got.count, got.closed) == (expected.count, expected.closed), where
        assert got.baseline == pytest.approx(expected.baseline, rel=1e-12, abs=0), where
        await self._expiring(["r:"], key, True)
        return got

    async def _expiring(self, kinds: list[str], key: str, present: bool) -> None:
        self.calls += 1
        for kind in kinds:
            pttl = await self.shared.client.pttl(self.shared.prefix + kind + key)
            # A key with entries has a TTL (idle keys vanish); one without them is gone.
            assert pttl > 0 if present else pttl == -2, (kind, key, pttl)


async def test_spread_keeps_last_seen_order_and_drops_stale_members(shared: Shared) -> None:
    twin = Twin(shared)
    assert await twin.spread("k", "a", START, 60) == ["a"]
    assert await twin.spread("k", "b", START, 60) == ["a", "b"]  # same time: call order
    assert await twin.spread("k", "c", START + 10, 60) == ["a", "b", "c"]
    assert await twin.spread("k", "a", START + 20, 60) == ["b", "c", "a"]  # a moves last
    assert await twin.spread("k", "d", START + 60, 60) == ["c", "a", "d"]  # b at START: stale
    assert await twin.spread("k", "e", START + 500, 60) == ["e"]
    assert await twin.spread("k", "f", START + 500, 0) == []  # a window of nothing
    assert await shared.names() == []


async def test_spread_keeps_at_most_max_members_dropping_the_oldest(shared: Shared) -> None:
    twin = Twin(shared)
    names = [f"10.0.{index}.0/24" for index in range(MAX_MEMBERS + 6)]
    for offset, name in enumerate(names):
        seen = await twin.spread("k", name, START + offset, 3600)
    assert list(seen) == names[-MAX_MEMBERS:]
    seen = await twin.spread("k", names[10], START + 100, 3600)  # touched again: newest
    assert len(seen) == MAX_MEMBERS
    assert list(seen) == [*names[6:10], *names[11:], names[10]]


async def test_burst_is_a_sliding_sum(shared: Shared) -> None:
    twin = Twin(shared)
    assert await twin.burst("k", START, 10, 1) == 1
    assert await twin.burst("k", START + 5, 10, 3) == 4
    assert await twin.burst("k", START + 10, 10, 2) == 5  # the hit at START is out
    assert await twin.burst("k", START + 14.999, 10, 1) == 6
    assert await twin.burst("k", START + 100, 10, 7) == 7
    assert await twin.burst("k", START + 100, 0, 7) == 0
    assert await shared.names() == []


async def test_burst_keeps_at_most_max_hits(shared: Shared) -> None:
    windows = shared.windows()
    memory = MemoryWindows()
    started = time.monotonic()
    got = 0
    for index in range(MAX_HITS + 50):
        got = await windows.burst("k", START + index * 0.001, 3600, 1 + index % 3)
    expected = 0
    for index in range(MAX_HITS + 50):
        expected = await memory.burst("k", START + index * 0.001, 3600, 1 + index % 3)
    assert got == expected
    assert got == sum(1 + index % 3 for index in range(50, MAX_HITS + 50))
    assert await shared.client.llen(shared.prefix + "b:k") == MAX_HITS
    assert time.monotonic() - started < 30  # one short script per call


async def test_rate_scales_the_first_bucket_up_to_a_whole_one(shared: Shared) -> None:
    twin = Twin(shared)
    end = 60 * math.ceil(START / 60) + 60  # a bucket edge
    sample = await twin.rate("k", end - 15, 60, 0.3, 5)  # first seen 15 s before the end
    assert sample == RateSample(5, 0.0, 0)
    sample = await twin.rate("k", end + 1, 60, 0.3, 1)
    assert sample == RateSample(1, 20.0, 1)  # 5 requests in a quarter bucket: 20 per bucket
    sample = await twin.rate("k", end + 60 * 3 + 2, 60, 0.3, 2)  # closes one, two empty
    assert sample.count == 2
    assert sample.closed == 4
    assert sample.baseline == pytest.approx((0.3 * 1 + 0.7 * 20) * 0.7**2, rel=1e-12)
    sample = await twin.rate("k", end + 60 * 2, 60, 0.3, 1)  # late, from an earlier bucket:
    assert sample.count == 3  # counted in the open one


async def test_rate_first_bucket_seen_briefly_counts_as_a_tenth(shared: Shared) -> None:
    twin = Twin(shared)
    edge = 60 * math.ceil(START / 60)
    await twin.rate("k", edge - 1, 60, 0.001, 3)  # seen 1/60 of a bucket: counts as 1/10
    sample = await twin.rate("k", edge + 60 * 20_000, 60, 0.001, 1)  # a gap beyond the cap
    assert sample.closed == 1 + MAX_GAP_BUCKETS
    assert sample.baseline == pytest.approx(3 / 0.1 * 0.999**MAX_GAP_BUCKETS, rel=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_random_sequences_match_memory(shared: Shared, seed: int) -> None:
    rng = random.Random(seed)
    twin = Twin(shared)
    keys = ["tok:a", "sub:b c", "ip:10.0.0.1", "ip:2001:db8::1", "rate:ü{x}"]
    # Buckets and windows of 10 s and more: no key may expire on Redis's clock mid-test.
    rates = {
        key: (rng.choice([10.0, 60.0, 300.0]), rng.choice([0.3, 0.05, 1.0, 0.5])) for key in keys
    }
    members = [f"net-{index}" for index in range(3 * MAX_MEMBERS)]
    now = START + rng.random() * 100
    longest = 0
    for call in range(800):
        # Quiet stretches (many keys, big steps, idle gaps) alternate with storms on one key
        # (calls a fraction of a second apart): the storms fill spread up to MAX_MEMBERS.
        storm = call // 200 % 2 == 1
        step = rng.random()
        if step < 0.2:
            now += 0.0  # several calls at one instant
        elif step < 0.75 or storm:
            now += rng.random() * (0.5 if storm else 5)
        elif step < 0.95:
            now += rng.randint(1, 50) * rng.choice([1.0, 10.0, 60.0]) + rng.random()
        else:
            now += 60.0 * rng.randint(100, 20_000)  # idle for many buckets
        key = keys[0] if storm else rng.choice(keys)
        window = rng.choice([30.0, 60.0, 300.0, 3600.0])  # shorter and longer than the steps
        kind = rng.random()
        if kind < (0.6 if storm else 0.35):
            window = 3600.0 if storm else window
            longest = max(longest, len(await twin.spread(key, rng.choice(members), now, window)))
        elif kind < 0.75:
            await twin.burst(key, now, window, rng.randint(1, 5))
        else:
            bucket, alpha = rates[key]
            await twin.rate(key, now, bucket, alpha, rng.randint(1, 5))
    assert twin.calls == 800
    assert longest == MAX_MEMBERS


async def test_out_of_order_times_match_memory(shared: Shared) -> None:
    """Events from several gateways reach the windows slightly out of time order: memory's
    answer depends on call order, and so does Redis's."""
    rng = random.Random(7)
    twin = Twin(shared)
    now = START
    for _ in range(300):
        now += rng.random() * 30
        at = now - rng.random() * 40  # up to 40 s of skew between the gateways
        key = rng.choice(["k1", "k2"])
        kind = rng.random()
        if kind < 0.35:
            await twin.spread(key, rng.choice("abcdefgh"), at, 100.0)
        elif kind < 0.7:
            await twin.burst(key, at, 100.0, rng.randint(1, 3))
        else:
            await twin.rate(key, at, 50.0, 0.2, rng.randint(1, 3))


async def test_every_key_expires(shared: Shared) -> None:
    windows = shared.windows()
    await windows.spread("k", "a", START, 2.5)
    await windows.burst("k", START, 2.0004, 1)
    await windows.rate("k", START, 60, 0.3, 1)  # 0.7**13 < 0.01 < 0.7**12
    await windows.rate("one", START, 10, 1.0, 1)
    await windows.rate("never", START, 10, 0.0, 1)
    pttl = {name.decode(): await shared.client.pttl(name) for name in await shared.names()}
    p = shared.prefix
    assert set(pttl) == {
        p + "s:k",
        p + "st:k",
        p + "b:k",
        p + "bt:k",
        p + "r:k",
        p + "r:one",
        p + "r:never",
    }
    assert 2000 < pttl[p + "s:k"] <= 2500
    assert abs(pttl[p + "s:k"] - pttl[p + "st:k"]) < 50  # read one after the other
    assert 1500 < pttl[p + "b:k"] <= 2001
    assert abs(pttl[p + "b:k"] - pttl[p + "bt:k"]) < 50
    assert 900_000 - 5000 < pttl[p + "r:k"] <= 900_000  # (13 + 2) buckets of 60 s
    assert 25_000 < pttl[p + "r:one"] <= 30_000  # one empty bucket zeroes the baseline
    assert pttl[p + "r:never"] > (MAX_GAP_BUCKETS + 1) * 10_000  # no decay: the gap cap


async def test_idle_keys_vanish_and_start_afresh(shared: Shared) -> None:
    windows = shared.windows()
    assert await windows.spread("k", "a", START, 0.2) == ["a"]
    assert await windows.burst("k", START, 0.2, 4) == 4
    await asyncio.sleep(0.35)  # Redis's clock: let the window pass for real
    assert await shared.names() == []
    assert await windows.spread("k", "b", START + 0.35, 0.2) == ["b"]
    assert await windows.burst("k", START + 0.35, 0.2, 1) == 1


async def test_two_gateways_share_one_window_per_key(shared: Shared) -> None:
    clients = [Redis.from_url(shared.url), Redis.from_url(shared.url)]
    a, b = (shared.windows(client) for client in clients)
    assert await a.spread("tok", "net-a", START, 60) == ["net-a"]
    assert await b.spread("tok", "net-b", START + 1, 60) == ["net-a", "net-b"]
    assert await a.spread("tok", "net-c", START + 2, 60) == ["net-a", "net-b", "net-c"]
    assert await a.rate("sub", START, 60, 0.3, 2) == RateSample(2, 0.0, 0)
    assert (await b.rate("sub", START + 1, 60, 0.3, 3)).count == 5
    # Concurrent hits from both, interleaved: the scripts are atomic, none is lost.
    totals = await asyncio.gather(
        *((a, b)[index % 2].burst("ip", START + 3, 60, 1) for index in range(60))
    )
    assert sorted(totals) == list(range(1, 61))
    assert await b.burst("ip", START + 4, 60, 0) == 60
    for client in clients:
        await client.aclose()
