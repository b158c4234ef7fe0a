"""The gateway feeds the monitor: one non-blocking usage event per decision (issue 8)."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.gateway.conftest import GatewayFactory
from tokenward.core.events import ALLOW, DENY, UsageEvent


class Collecting:
    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def emit(self, event: UsageEvent) -> None:
        self.events.append(event)


def wait_for(sink: Collecting, count: int) -> list[UsageEvent]:
    deadline = time.monotonic() + 5
    while len(sink.events) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    return sink.events


def test_allowed_and_denied_requests_become_events(
    gateway: GatewayFactory, mint: Callable[..., str]
) -> None:
    sink = Collecting()
    running = gateway(usage=sink)
    token = mint()
    assert (
        running.http.get("/items", headers={"authorization": f"Bearer {token}"}).status_code == 200
    )
    assert running.http.get("/items").status_code == 401
    allowed, denied = wait_for(sink, 2)[:2]
    assert allowed.decision == ALLOW
    assert allowed.sub == "alice"
    assert allowed.source == "gateway"
    assert allowed.jti
    assert denied.decision == DENY
    assert denied.sub is None  # nothing unverified is attributed
    assert denied.status == 401
