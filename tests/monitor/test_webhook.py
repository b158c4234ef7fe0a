"""Alerts delivered to a real receiver (uvicorn on loopback): signed, retried, bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import FrozenClock
from tests.e2e.live import free_port, serve_in_thread
from tests.monitor.conftest import make_rig
from tokenward.core.events import REFRESH_REUSE, AuthEvent
from tokenward.monitor.webhook import SIGNATURE_HEADER, WebhookSender, sign, verify_signature

pytestmark = pytest.mark.anyio
SECRET = "webhook-secret-of-some-length"


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    status_when_failing: int = 500
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    attempts: int = 0


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    port = free_port()
    state = Receiver(f"http://127.0.0.1:{port}/hook")

    async def hook(request: Request) -> Response:
        state.attempts += 1
        if state.attempts <= state.fail_first:
            return Response(status_code=state.status_when_failing)
        state.received.append((dict(request.headers), await request.body()))
        return Response(status_code=204)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with serve_in_thread(app, port):
        yield state


@pytest.fixture(autouse=True)
def fresh(receiver: Receiver) -> None:
    receiver.received.clear()
    receiver.attempts = 0
    receiver.fail_first = 0
    receiver.status_when_failing = 500


async def no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


async def test_an_alert_reaches_the_receiver_signed(clock: FrozenClock, receiver: Receiver) -> None:
    rig = make_rig(clock, webhook={"url": receiver.url, "secret": SECRET})
    rig.monitor.webhook._clock = time.time  # type: ignore[union-attr]  # the receiver's clock
    await rig.monitor.start()
    try:
        rig.monitor.emit(AuthEvent(clock(), REFRESH_REUSE, "203.0.113.1", sub="u", family_id="f"))
        await rig.monitor.drain()
        await asyncio.wait_for(rig.monitor.webhook.wait_idle(), 10)  # type: ignore[union-attr]
    finally:
        await rig.monitor.stop()
    [(headers, body)] = receiver.received
    assert verify_signature(SECRET.encode(), headers["tokenward-signature"], body, time.time())
    assert not verify_signature(
        b"another-secret", headers["tokenward-signature"], body, time.time()
    )
    assert not verify_signature(
        SECRET.encode(), headers["tokenward-signature"], body + b" ", time.time()
    )
    payload: dict[str, Any] = orjson.loads(body)
    assert payload["type"] == "tokenward.alert"
    assert payload["alert"]["detector"] == "refresh_reuse"
    assert headers["tokenward-delivery"] == payload["alert"]["id"]
    assert headers["content-type"] == "application/json"


async def test_failures_are_retried_with_backoff(receiver: Receiver) -> None:
    receiver.fail_first = 2
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    sender = WebhookSender(
        receiver.url, SECRET.encode(), base_delay=0.5, max_delay=0.8, sleep=record
    )
    sender.start()
    try:
        sender.submit("a1", {"n": 1})
        await asyncio.wait_for(sender.wait_idle(), 10)
    finally:
        await sender.stop()
    assert receiver.attempts == 3
    assert len(receiver.received) == 1
    assert delays == [0.5, 0.8]  # doubled, capped
    assert (sender.delivered, sender.failed) == (1, 0)


async def test_gives_up_after_max_attempts(receiver: Receiver) -> None:
    receiver.fail_first = 100
    sender = WebhookSender(receiver.url, SECRET.encode(), max_attempts=3, sleep=no_sleep)
    sender.start()
    try:
        sender.submit("a1", {"n": 1})
        sender.submit("a2", {"n": 2})
        await asyncio.wait_for(sender.wait_idle(), 10)
    finally:
        await sender.stop()
    assert receiver.attempts == 6
    assert (sender.delivered, sender.failed) == (0, 2)


async def test_client_errors_are_not_retried(receiver: Receiver) -> None:
    receiver.fail_first = 1
    receiver.status_when_failing = 400
    sender = WebhookSender(receiver.url, SECRET.encode(), sleep=no_sleep)
    sender.start()
    try:
        sender.submit("a1", {"n": 1})
        await asyncio.wait_for(sender.wait_idle(), 10)
    finally:
        await sender.stop()
    assert receiver.attempts == 1
    assert sender.failed == 1


async def test_unreachable_receiver_is_retried_then_dropped() -> None:
    sender = WebhookSender(
        f"http://127.0.0.1:{free_port()}/hook", SECRET.encode(), max_attempts=2, sleep=no_sleep
    )
    sender.start()
    try:
        sender.submit("a1", {"n": 1})
        await asyncio.wait_for(sender.wait_idle(), 10)
    finally:
        await sender.stop()
    assert sender.failed == 1


def test_the_queue_is_bounded() -> None:
    sender = WebhookSender("http://127.0.0.1:9/hook", SECRET.encode(), capacity=3)
    for i in range(10):
        sender.submit(f"a{i}", {"n": i})
    assert sender.dropped == 7
    assert [d for d, _ in sender._pending] == ["a7", "a8", "a9"]  # the newest are kept


def test_signature_format_and_replay_window() -> None:
    header = sign(b"k" * 20, b"{}", 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert len(header.split("v1=")[1]) == 64
    assert verify_signature(b"k" * 20, header, b"{}", 1_700_000_100)
    assert not verify_signature(b"k" * 20, header, b"{}", 1_700_000_301)  # too old
    assert not verify_signature(b"k" * 20, "garbage", b"{}", 1_700_000_000)
    assert SIGNATURE_HEADER == "Tokenward-Signature"


def test_a_short_secret_is_refused(clock: FrozenClock) -> None:
    with pytest.raises(ValueError, match="secret"):
        make_rig(clock, webhook={"url": "http://127.0.0.1:9/", "secret": "short"})
