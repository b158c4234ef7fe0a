"""The sink never blocks, windows stay bounded, the EWMA is what the docs say, stats add up."""

from __future__ import annotations

import time
from typing import cast

import pytest

from tests.conftest import FrozenClock
from tests.monitor.conftest import Rig, make_rig
from tokenward.core.events import DENY, EventBuffer, NullSink, UsageEvent
from tokenward.monitor.detectors import network_of
from tokenward.store.memory_blocklist import MemoryBlocklist
from tokenward.store.memory_windows import MemoryWindows

pytestmark = pytest.mark.anyio


def event(i: int = 0) -> UsageEvent:
    return UsageEvent(1.0, f"j{i}", "s", "c", "/r", "10.0.0.1", None, 200, "allow", "ok")


def test_a_full_buffer_drops_and_counts_without_blocking() -> None:
    buffer = EventBuffer(capacity=100)
    started = time.perf_counter()
    for i in range(10_000):
        buffer.put(event(i))
    assert time.perf_counter() - started < 1.0
    assert len(buffer) == 100
    assert buffer.dropped == 9_900
    assert buffer.received == 100
    assert [cast(UsageEvent, e).jti for e in buffer.take(3)] == ["j0", "j1", "j2"]  # oldest first


async def test_the_monitor_reports_drops_and_keeps_working(clock: FrozenClock) -> None:
    rig = make_rig(clock, buffer=10)
    for i in range(25):
        rig.monitor.emit(rig.usage(jti=f"j{i}"))
    health = rig.monitor.health()
    assert health["dropped"] == 15
    assert health["queued"] == 10
    assert await rig.monitor.drain() == 10
    assert rig.monitor.health()["processed"] == 10


async def test_a_disabled_monitor_and_the_null_sink_take_nothing(clock: FrozenClock) -> None:
    rig = make_rig(clock, enabled=False)
    rig.monitor.emit(rig.usage())
    assert len(rig.monitor.buffer) == 0
    NullSink().emit(event())


async def test_background_task_drains_on_its_own(clock: FrozenClock) -> None:
    rig = make_rig(clock, drain_interval=0.01)
    await rig.monitor.start()
    try:
        rig.monitor.emit(rig.usage())
        for _ in range(200):
            if rig.monitor.processed:
                break
            await _tick()
        assert rig.monitor.processed == 1
    finally:
        await rig.monitor.stop()


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.01)


def test_networks() -> None:
    assert network_of("198.51.100.77", "network") == "198.51.100.0/24"
    assert network_of("198.51.100.77", "ip") == "198.51.100.77"
    assert network_of("2001:db8:1:2:3:4:5:6", "network") == "2001:db8:1:2::/64"
    assert network_of("::ffff:198.51.100.77", "network") == "198.51.100.0/24"
    assert network_of("[2001:db8::1]", "ip") == "2001:db8::1"
    assert network_of("not-an-ip", "network") == "not-an-ip"


async def test_ewma_baseline_follows_the_documented_formula() -> None:
    windows = MemoryWindows()
    for count, bucket in ((10, 0), (20, 1)):
        for _ in range(count):
            sample = await windows.rate("k", bucket * 60, 60, 0.5)
    assert (sample.count, sample.baseline, sample.closed) == (20, 10.0, 1)
    sample = await windows.rate("k", 2 * 60 + 1, 60, 0.5)  # closes bucket 1: 0.5·20 + 0.5·10
    assert (sample.count, sample.baseline, sample.closed) == (1, 15.0, 2)
    sample = await windows.rate("k", 5 * 60 + 1, 60, 0.5)  # closes 2 (count 1), then 2 empty
    assert sample.baseline == pytest.approx((0.5 * 1 + 0.5 * 15) * 0.25)
    assert sample.closed == 5
    # A key first seen 15 s before its bucket ends: 5 requests count as 20 per bucket.
    for _ in range(5):
        await windows.rate("late", 45, 60, 0.5)
    assert (await windows.rate("late", 61, 60, 0.5)).baseline == 20.0
    # A key first seen 15 s before its bucket ends: 5 requests count as 20 per bucket.
    for _ in range(5):
        await windows.rate("late", 45, 60, 0.5)
    assert (await windows.rate("late", 61, 60, 0.5)).baseline == 20.0


async def test_windows_are_bounded() -> None:
    windows = MemoryWindows(max_keys=100)
    for i in range(1000):
        await windows.spread(f"k{i}", "m", 1.0, 60)
        await windows.burst(f"k{i}", 1.0, 60)
        await windows.rate(f"k{i}", 1.0, 60, 0.3)
    assert len(windows) == 300
    members = await windows.spread("wide", "a", 1.0, 60)
    for i in range(500):
        members = await windows.spread("wide", f"m{i}", 1.0, 60)
    assert len(members) == 64
    assert members[-1] == "m499"


def test_blocklist_expires_and_canonicalises(clock: FrozenClock) -> None:
    blocklist = MemoryBlocklist(clock)
    assert not blocklist.is_blocked("198.51.100.1")
    blocklist.block("::ffff:198.51.100.1", 60, "test", "admin:x")
    assert blocklist.is_blocked("198.51.100.1")
    assert blocklist.is_blocked("::ffff:198.51.100.1")
    assert [e.ip for e in blocklist.entries()] == ["198.51.100.1"]
    clock.advance(61)
    assert not blocklist.is_blocked("198.51.100.1")
    assert blocklist.entries() == []
    blocklist.block("2001:db8::1", 60, "t", "a")
    assert blocklist.unblock("2001:DB8::1")


async def test_usage_stats_for_the_dashboard(rig: Rig) -> None:
    await rig.feed(
        *(rig.usage(jti="a", sub="alice", ip="10.0.0.1") for _ in range(5)),
        *(rig.usage(jti="b", sub="bob", ip="10.0.0.2") for _ in range(2)),
        *(rig.usage(jti=None, sub=None, decision=DENY, reason="expired") for _ in range(3)),
    )
    rig.clock.advance(120)
    await rig.feed(rig.usage(jti="a"))
    snap = rig.monitor.stats.snapshot(rig.clock())
    assert snap["requests"] == 11
    assert snap["denied"] == 3
    assert snap["top_tokens"][0] == {"key": "a", "sub": "alice", "count": 6}
    assert snap["top_subjects"][0] == {"key": "alice", "count": 6}
    assert snap["deny_reasons"] == [{"key": "expired", "count": 3}]
    assert len(snap["series"]) == 60
    assert sum(p["allow"] for p in snap["series"]) == 8
