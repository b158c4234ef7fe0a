"""Outbound deliveries (RFC 8935 pushes, back-channel logout POSTs): retried with exponential
backoff on 5xx, 408, 429 and network errors, not retried on other refusals, given up after
`max_attempts`, and bounded in what waits. The receiver is a real HTTP server on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.e2e.live import free_port, serve_in_thread
from tokenward.oauth.ssf.delivery import Deliveries

pytestmark = pytest.mark.anyio


@dataclass
class Script:
    """The answers the receiver gives, in order (the last one repeats), and when each came."""

    statuses: list[int]
    seen: list[float] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def receiver() -> Iterator[tuple[str, Script]]:
    script = Script([202])

    async def answer(request: Request) -> Response:
        script.seen.append(time.monotonic())
        script.bodies.append(await request.body())
        script.arrived.set()
        status = script.statuses[min(len(script.seen), len(script.statuses)) - 1]
        return Response(b"x" * 100_000 if status == 500 else b"", status_code=status)

    app = Starlette(routes=[Route("/events", answer, methods=["POST"])])
    with serve_in_thread(app, free_port()) as base:
        yield base + "/events", script


async def delivered(deliveries: Deliveries) -> None:
    with anyio.fail_after(10):
        await deliveries.wait_idle()


async def test_retries_with_backoff_until_accepted(receiver: tuple[str, Script]) -> None:
    url, script = receiver
    script.statuses = [503, 500, 202]  # the 500 also sends a long body: read only in part
    deliveries = Deliveries(allow_loopback=True, base_delay=0.2, max_delay=1.0)
    await deliveries.start()
    try:
        deliveries.submit(url, b"set-1", {"content-type": "application/secevent+jwt"}, "t")
        await delivered(deliveries)
    finally:
        await deliveries.stop()

    assert deliveries.stats.delivered == 1
    assert script.bodies == [b"set-1"] * 3
    first_wait, second_wait = script.seen[1] - script.seen[0], script.seen[2] - script.seen[1]
    assert 0.2 <= first_wait < 0.39  # base_delay
    assert 0.4 <= second_wait < 0.8  # doubled


async def test_a_refusal_is_not_retried(receiver: tuple[str, Script]) -> None:
    url, script = receiver
    script.statuses = [400]
    deliveries = Deliveries(allow_loopback=True, base_delay=0.05)
    await deliveries.start()
    try:
        deliveries.submit(url, b"bad", {}, "t")
        await delivered(deliveries)
    finally:
        await deliveries.stop()

    assert len(script.seen) == 1
    assert deliveries.stats.refused == 1


async def test_gives_up_after_max_attempts(receiver: tuple[str, Script]) -> None:
    url, script = receiver
    script.statuses = [429]
    deliveries = Deliveries(allow_loopback=True, base_delay=0.01, max_delay=0.02, max_attempts=3)
    await deliveries.start()
    try:
        deliveries.submit(url, b"x", {}, "t")
        await delivered(deliveries)
    finally:
        await deliveries.stop()

    assert len(script.seen) == 3
    assert deliveries.stats.gave_up == 1


async def test_an_unreachable_receiver_is_retried_then_given_up() -> None:
    deliveries = Deliveries(allow_loopback=True, base_delay=0.01, max_attempts=2, timeout=1.0)
    await deliveries.start()
    try:
        deliveries.submit(f"http://127.0.0.1:{free_port()}/nobody", b"x", {}, "t")
        await delivered(deliveries)
    finally:
        await deliveries.stop()

    assert deliveries.stats.gave_up == 1


async def test_one_dead_receiver_does_not_hold_up_another(receiver: tuple[str, Script]) -> None:
    url, script = receiver
    deliveries = Deliveries(allow_loopback=True, base_delay=5.0, max_attempts=2, timeout=1.0)
    await deliveries.start()
    try:
        deliveries.submit(f"http://127.0.0.1:{free_port()}/dead", b"dead", {}, "dead")
        deliveries.submit(url, b"alive", {}, "alive")
        # Long before the dead one's retry is due:
        assert await anyio.to_thread.run_sync(lambda: script.arrived.wait(3))
    finally:
        await deliveries.stop()

    assert script.bodies == [b"alive"]


async def test_the_queue_is_bounded_and_drops_the_oldest(receiver: tuple[str, Script]) -> None:
    url, script = receiver
    deliveries = Deliveries(allow_loopback=True, capacity=2)
    for body in (b"1", b"2", b"3"):
        deliveries.submit(url, body, {}, "t")  # before start: they wait
    assert len(deliveries) == 2
    await deliveries.start()
    try:
        await delivered(deliveries)
    finally:
        await deliveries.stop()

    assert deliveries.stats.dropped == 1
    assert script.bodies == [b"2", b"3"]


async def test_loopback_is_refused_unless_allowed(receiver: tuple[str, Script]) -> None:
    # The same loopback receiver: refused (not retried, never contacted) by default, reached
    # with the development setting. By name too: localhost resolves to loopback.
    url, script = receiver
    named = url.replace("127.0.0.1", "localhost")
    guarded = Deliveries(base_delay=0.01)
    await guarded.start()
    try:
        guarded.submit(url, b"x", {}, "literal")
        guarded.submit(named, b"x", {}, "named")
        guarded.submit(named.replace("http://", "https://"), b"x", {}, "https")
        await delivered(guarded)
    finally:
        await guarded.stop()
    assert (guarded.stats.refused, guarded.stats.delivered, script.seen) == (3, 0, [])

    allowed = Deliveries(allow_loopback=True)
    await allowed.start()
    try:
        allowed.submit(named, b"dev", {}, "named")
        await delivered(allowed)
    finally:
        await allowed.stop()
    assert allowed.stats.delivered == 1
    assert script.bodies == [b"dev"]


@pytest.fixture
def dripping() -> Iterator[str]:
    """A receiver that answers 200 and then a byte every 50 ms, for ever (slow-loris)."""

    async def answer(_request: Request) -> Response:
        async def drip() -> AsyncIterator[bytes]:
            while True:
                yield b"."
                await anyio.sleep(0.05)

        return StreamingResponse(drip(), status_code=200)

    app = Starlette(routes=[Route("/events", answer, methods=["POST"])])
    with serve_in_thread(app, free_port()) as base:
        yield base + "/events"


async def test_an_attempt_is_bounded_in_time_as_a_whole(dripping: str) -> None:
    # Each byte comes well within the read timeout; the deadline still ends the attempt.
    deliveries = Deliveries(allow_loopback=True, timeout=1.0, deadline=0.5, max_attempts=1)
    await deliveries.start()
    started = time.monotonic()
    try:
        deliveries.submit(dripping, b"x", {}, "drip")
        await delivered(deliveries)
    finally:
        await deliveries.stop()

    assert deliveries.stats.gave_up == 1
    assert time.monotonic() - started < 3.0
