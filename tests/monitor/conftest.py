"""A monitor on memory stores and a frozen clock, and a factory for synthetic usage events."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from tests.conftest import FrozenClock
from tokenward.core.events import ALLOW, UsageEvent
from tokenward.core.ports import AlertClaims
from tokenward.core.revocation_mirror import RevocationMirror
from tokenward.deploy.monitor_wiring import build_monitor
from tokenward.monitor.config import MonitorSettings
from tokenward.monitor.pipeline import Monitor
from tokenward.store.memory import MemoryRevocationStore
from tokenward.store.memory_flows import MemorySessionStore


@dataclass
class Rig:
    monitor: Monitor
    clock: FrozenClock
    mirror: RevocationMirror
    sessions: MemorySessionStore
    audit: io.StringIO

    def usage(self, **fields: Any) -> UsageEvent:
        base: dict[str, Any] = {
            "time": self.clock(),
            "jti": "jti-1",
            "sub": "alice",
            "client_id": "web",
            "route": "/api/hello",
            "ip": "203.0.113.5",
            "user_agent": "test",
            "status": 200,
            "decision": ALLOW,
            "reason": "ok",
        }
        return UsageEvent(**{**base, **fields})

    async def feed(self, *events: Any) -> None:
        for event in events:
            self.monitor.emit(event)
        await self.monitor.drain()

    def audit_lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.audit.getvalue().splitlines()]


def make_rig(clock: FrozenClock, claims: AlertClaims | None = None, **settings: Any) -> Rig:
    store = MemoryRevocationStore()
    mirror = RevocationMirror()
    store.attach(mirror)
    sessions = MemorySessionStore()
    audit = io.StringIO()
    monitor = build_monitor(
        MonitorSettings(**settings),
        revocations=store,
        sessions=sessions,
        keep=3600,
        clock=clock,
        audit_stream=audit,
        claims=claims,
    )
    return Rig(monitor, clock, mirror, sessions, audit)


@pytest.fixture
def rig(clock: FrozenClock) -> Rig:
    return make_rig(clock)
