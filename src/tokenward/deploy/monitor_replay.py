"""`tokenward monitor replay AUDIT.jsonl`: gateway audit lines through the live monitor.

Part of the composition root: it builds the same `Monitor` as `tokenward serve` does
(`build_monitor`, the same settings from `TOKENWARD_MONITOR_*`), with the event-time clock of
`monitor.replay` and in-memory stores, so responses (revocations, blocks) are carried out and
reported but touch nothing real; no audit lines, no webhook.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, TextIO

import orjson

from tokenward.core.events import UsageEvent
from tokenward.deploy.monitor_wiring import build_monitor
from tokenward.monitor.config import MonitorSettings
from tokenward.monitor.pipeline import Monitor
from tokenward.monitor.replay import EventClock, alert_line, parse_audit_line, replay
from tokenward.monitor.risk import Locator
from tokenward.store.memory import MemoryRevocationStore
from tokenward.store.memory_blocklist import MemoryBlocklist
from tokenward.store.memory_flows import MemorySessionStore

KEEP = 86_400.0  # revocations in a replay are remembered for a day of event time


def replay_monitor(
    settings: MonitorSettings, clock: EventClock, locator: Locator | None = None
) -> Monitor:
    offline = settings.model_copy(
        update={"audit_log": "off", "webhook": settings.webhook.model_copy(update={"url": None})}
    )
    return build_monitor(
        offline,
        revocations=MemoryRevocationStore(),
        sessions=MemorySessionStore(),
        keep=KEEP,
        clock=clock,
        blocklist=MemoryBlocklist(clock),
        locator=locator,
    )


def audit_events(
    lines: Iterable[bytes | str], errors: TextIO | None = None
) -> Iterator[UsageEvent]:
    """The events of audit lines; a malformed line is reported (by number) and skipped."""
    from tokenward.monitor.replay import ReplayError  # noqa: PLC0415

    for number, line in enumerate(lines, 1):
        try:
            event = parse_audit_line(line)
        except ReplayError as exc:
            if errors is not None:
                print(f"line {number}: {exc}", file=errors)
            continue
        if event is not None:
            yield event


async def run_replay(
    source: IO[bytes],
    out: TextIO,
    settings: MonitorSettings,
    *,
    errors: TextIO | None = None,
    locator: Locator | None = None,
) -> int:
    """Writes one JSON line per alert; returns how many."""
    clock = EventClock()
    monitor = replay_monitor(settings, clock, locator)
    count = 0
    async for alert in replay(monitor, clock, audit_events(source, errors)):
        out.write(orjson.dumps(alert_line(alert)).decode() + "\n")
        count += 1
    return count
