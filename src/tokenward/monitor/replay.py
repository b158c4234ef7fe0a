"""Offline replay: gateway audit lines through the live monitor, in event time.

`parse_audit_line` turns one line of the gateway's audit log (docs/gateway.md) into the
`UsageEvent` the gateway emitted for the same request; `replay` feeds events to a `Monitor`
whose clock is the events' own time, in the batches the live monitor's task would have
drained (`drain_interval` of event time each), so detectors, deduplication (cooldown) and
responses run exactly as they do live; `alert_line` is one JSON line per alert.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import orjson

from tokenward.core.events import ALLOW, DENY, UsageEvent
from tokenward.monitor.alerts import Alert
from tokenward.monitor.pipeline import Monitor

MAX_LINE = 16_384
MAX_FIELD = 512


class ReplayError(ValueError):
    """A line that is not a gateway audit line."""


class EventClock:
    """The monitor's clock during a replay: the time of the event being processed."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _text(row: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = row.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise ReplayError(f"{name} must be a string of at most {MAX_FIELD} characters")
    return value


def parse_audit_line(line: bytes | str) -> UsageEvent | None:
    """The event of one audit line; None for a blank line. Raises ReplayError."""
    if isinstance(line, str):
        line = line.encode()
    if len(line) > MAX_LINE:
        raise ReplayError("line too long")
    if not line.strip():
        return None
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ReplayError("not JSON") from None
    if not isinstance(row, dict):
        raise ReplayError("not a JSON object")
    stamp = _text(row, "time", required=True) or ""
    try:
        when = datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        raise ReplayError("time is not RFC 3339") from None
    status = row.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ReplayError("status must be an HTTP status")
    decision = row.get("decision")
    if decision not in (ALLOW, DENY):
        raise ReplayError("decision must be allow or deny")
    return UsageEvent(
        time=when,
        jti=_text(row, "jti"),
        sub=_text(row, "sub"),
        client_id=_text(row, "client_id"),
        route=_text(row, "route", required=True) or "-",
        ip=_text(row, "client_ip", required=True) or "-",
        user_agent=_text(row, "user_agent"),
        status=status,
        decision=str(decision),
        reason=_text(row, "reason", required=True) or "ok",
        sid=_text(row, "sid"),
        source="gateway",
        path=_text(row, "path"),
    )


def target_of(alert: Alert) -> tuple[str, str]:
    """(kind, value) an alert is about: from its deduplication key, e.g. `sub:alice` (the
    risk detector appends `|<action>`)."""
    kind, _, value = alert.key.partition(":")
    return kind, value.split("|", 1)[0]


def alert_line(alert: Alert) -> dict[str, Any]:
    kind, value = target_of(alert)
    score = alert.evidence.get("score")
    return {
        "detector": alert.detector,
        "target": {"kind": kind, "value": value},
        "time": alert.time,
        "score": score,
        "explanation": alert.explanation,
        "responses": [
            {k: v for k, v in response.items() if k in ("action", "done", "failed")}
            for response in alert.responses
        ],
    }


async def replay(
    monitor: Monitor, clock: EventClock, events: Iterable[UsageEvent]
) -> AsyncIterator[Alert]:
    """Every alert the monitor raises for `events` (in time order), as it raises them."""
    window = monitor.settings.drain_interval
    batch_end: float | None = None
    for event in events:
        if batch_end is not None and event.time >= batch_end:
            for alert in await _drain(monitor):
                yield alert
            batch_end = None
        if batch_end is None:
            batch_end = event.time + window
        clock.now = max(clock.now, event.time)
        monitor.emit(event)
    if batch_end is not None:
        for alert in await _drain(monitor):
            yield alert


async def _drain(monitor: Monitor) -> list[Alert]:
    """One batch, as the live task drains it; the clock reads the batch's latest event."""
    before = monitor.alerts.added
    await monitor.drain()
    fresh = monitor.alerts.added - before
    return list(reversed(monitor.alerts.recent(fresh))) if fresh else []
