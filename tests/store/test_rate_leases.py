"""Quota leases (`store.rate_leases`): what one process spends of a shared limit without asking
the shared bucket, and how the lease size follows the key's rate within its cap."""

from __future__ import annotations

import pytest

from tokenward.core.ratelimits import RatePolicy
from tokenward.store.rate_leases import HORIZON, TTL, LeaseTable, max_lease

BIG = RatePolicy("big", 10_000, 3600.0, "token")  # K_max = 100
SMALL = RatePolicy("small", 150, 3600.0, "token")  # K_max = 1: exact


def test_lease_cap_is_one_percent_of_the_limit_and_at_least_one() -> None:
    assert max_lease(BIG) == 100
    assert max_lease(SMALL) == 1
    assert max_lease(RatePolicy("one", 1, 1.0, "ip")) == 1


def test_a_new_key_asks_for_one_and_spends_exactly_what_was_granted() -> None:
    table = LeaseTable()
    assert table.spend("k", 0.0) is None
    assert table.request("k", BIG, 0.0) == (1, 0)
    table.granted("k", 3, remaining=50, debt=12.0, now=0.0)
    decisions = [table.spend("k", 0.5) for _ in range(3)]
    assert [(d.allowed, d.remaining) for d in decisions if d is not None] == [
        (True, 52),
        (True, 51),
        (True, 50),
    ]
    assert decisions[0] is not None
    assert decisions[0].reset == pytest.approx(11.5)
    assert table.spend("k", 0.5) is None  # spent: the bucket decides the next one


def test_lease_size_doubles_while_busy_up_to_the_cap_and_halves_when_idle() -> None:
    table = LeaseTable()
    now = 0.0
    sizes = []
    for _ in range(10):  # each lease used up at once: the key is busy
        size, _ = table.request("k", BIG, now)
        sizes.append(size)
        table.granted("k", size, remaining=0, debt=1.0, now=now)
        while table.spend("k", now) is not None:
            pass
        now += HORIZON / 4
    assert sizes == [1, 2, 4, 8, 16, 32, 64, 100, 100, 100]
    now += 2 * HORIZON  # idle for longer than a lease should last
    assert table.request("k", BIG, now) == (50, 0)
    table.granted("k", 50, remaining=0, debt=1.0, now=now)
    while table.spend("k", now) is not None:
        pass
    assert table.request("k", BIG, now + 2 * HORIZON) == (25, 0)


def test_small_limits_never_lease_more_than_one() -> None:
    table = LeaseTable()
    for step in range(5):
        size, _ = table.request("k", SMALL, step * 1e-4)
        assert size == 1
        table.granted("k", 1, remaining=0, debt=1.0, now=step * 1e-4)
        assert table.spend("k", step * 1e-4) is not None


def test_an_expired_lease_is_not_spent_and_goes_back_with_the_next_request() -> None:
    table = LeaseTable()
    table.request("k", BIG, 0.0)
    table.granted("k", 8, remaining=0, debt=1.0, now=0.0)
    assert table.spend("k", 0.0) is not None
    assert table.spend("k", TTL) is None  # 7 left, but the lease is over
    _size, returned = table.request("k", BIG, TTL)
    assert returned == 7
    assert table.spend("k", TTL) is None  # given back: not spendable here any more
    assert table.request("k", BIG, TTL) == (1, 0)  # nothing left to give back twice


def test_a_refusal_stands_for_its_retry_after_without_asking() -> None:
    table = LeaseTable()
    table.request("k", BIG, 0.0)
    table.refused("k", debt=3600.0, retry_after=0.4, now=10.0)
    refused = table.spend("k", 10.1)
    assert refused is not None
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert refused.retry_after == pytest.approx(0.3)
    assert refused.reset == pytest.approx(3599.9)
    assert table.spend("k", 10.4) is None  # then the bucket is asked again


def test_table_is_bounded_and_forgets_spent_keys_first() -> None:
    table = LeaseTable(max_keys=2)
    table.granted("spent", 1, remaining=0, debt=1.0, now=0.0)
    assert table.spend("spent", 0.0) is not None
    table.granted("held", 5, remaining=0, debt=1.0, now=0.0)
    table.granted("new", 5, remaining=0, debt=1.0, now=0.0)
    assert len(table) == 2
    assert table.spend("held", 0.0) is not None  # kept: it still holds requests
    assert table.spend("spent", 0.0) is None
    with pytest.raises(ValueError, match="max_keys"):
        LeaseTable(max_keys=0)
