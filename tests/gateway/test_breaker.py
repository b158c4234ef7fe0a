"""The circuit breaker: open after N consecutive failures, half-open after the cool-off with
exactly one probe, closed by the probe's success or opened again by its failure."""

from __future__ import annotations

from tests.conftest import FrozenClock
from tokenward.gateway.breaker import CLOSED, HALF_OPEN, OPEN, Breaker


def test_consecutive_failures_open_it_and_a_success_in_between_resets_the_count() -> None:
    clock = FrozenClock()
    breaker = Breaker(3, 10.0, clock)
    breaker.failure()
    breaker.failure()
    breaker.success()  # not consecutive any more
    breaker.failure()
    breaker.failure()
    assert breaker.state == CLOSED
    assert breaker.begin()
    breaker.failure()
    assert breaker.state == OPEN
    assert not breaker.available()
    assert not breaker.begin()


def test_half_open_lets_one_probe_through_and_its_success_closes_it() -> None:
    clock = FrozenClock()
    breaker = Breaker(1, 10.0, clock)
    breaker.failure()
    clock.advance(9.9)
    assert breaker.state == OPEN
    clock.advance(0.1)
    assert breaker.state == HALF_OPEN
    assert breaker.begin()  # the probe
    assert not breaker.available()  # and nobody else meanwhile
    assert not breaker.begin()
    breaker.success()
    assert breaker.state == CLOSED
    assert breaker.begin()
    assert breaker.begin()


def test_a_failed_probe_opens_it_for_another_cool_off() -> None:
    clock = FrozenClock()
    breaker = Breaker(2, 5.0, clock)
    breaker.failure()
    breaker.failure()
    clock.advance(5.0)
    assert breaker.begin()
    breaker.failure()
    assert breaker.state == OPEN
    clock.advance(4.0)
    assert not breaker.begin()
    clock.advance(1.0)
    assert breaker.begin()


def test_a_probe_that_never_reports_is_given_up_after_a_cool_off() -> None:
    clock = FrozenClock()
    breaker = Breaker(1, 5.0, clock)
    breaker.failure()
    clock.advance(5.0)
    assert breaker.begin()
    clock.advance(4.9)
    assert not breaker.begin()
    clock.advance(0.1)
    assert breaker.begin()  # another probe: the first one's client left mid-stream


def test_a_late_success_while_open_does_not_close_it() -> None:
    clock = FrozenClock()
    breaker = Breaker(1, 5.0, clock)
    breaker.failure()
    breaker.success()  # a request that started before the circuit opened
    assert breaker.state == OPEN
