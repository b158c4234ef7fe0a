"""GCRA: exact quota per window, steady refill, bounded memory, header rendering."""

from __future__ import annotations

import pytest

from tokenward.core.ratelimits import RatePolicy
from tokenward.gateway.ratelimit import (
    MemoryRateLimiter,
    policy_header,
    retry_after,
    state_header,
)

HOURLY = RatePolicy("default", 1000, 3600.0, "token")
T0 = 1_800_000_000.0


def test_burst_of_the_whole_quota_then_refusal() -> None:
    limiter = MemoryRateLimiter()
    decisions = [limiter.acquire_sync("k", HOURLY, T0) for _ in range(1001)]
    assert all(d.allowed for d in decisions[:1000])
    assert [d.remaining for d in decisions[:3]] == [999, 998, 997]
    refused = decisions[1000]
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(3.6, abs=1e-3)
    assert retry_after(refused) == b"4"


def test_burst_then_exact_sustained_rate() -> None:
    policy = RatePolicy("p", 10, 60.0, "ip")
    limiter = MemoryRateLimiter()
    admitted: list[float] = []
    now = T0
    for _ in range(2000):  # one attempt every 0.5 s for 1000 s
        if limiter.acquire_sync("k", policy, now).allowed:
            admitted.append(now)
        now += 0.5
    interval = 6.0
    for index, start in enumerate(admitted):
        for span in (6.0, 60.0, 300.0):
            in_span = [t for t in admitted[index:] if t < start + span]
            assert len(in_span) <= 10 + span / interval  # burst + steady refill, never more
    # Long-run rate: one per emission interval (6 s), plus the initial burst.
    assert len(admitted) == pytest.approx(10 + 1000 / 6, abs=2)


def test_keys_are_independent_and_memory_is_bounded() -> None:
    policy = RatePolicy("p", 1, 60.0, "ip")
    limiter = MemoryRateLimiter(max_keys=100)
    for index in range(1000):
        assert limiter.acquire_sync(f"k{index}", policy, T0 + index).allowed
    assert len(limiter) <= 100


def test_headers() -> None:
    limiter = MemoryRateLimiter()
    decision = limiter.acquire_sync("k", HOURLY, T0)
    assert policy_header(HOURLY) == b'"default";q=1000;w=3600'
    assert state_header(HOURLY, decision) == b'"default";r=999;t=4'
    odd = RatePolicy('we"ird\\', 5, 0.5, "ip")
    assert policy_header(odd) == b'"weird";q=5;w=1'
