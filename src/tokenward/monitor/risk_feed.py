"""Risk scoring inside a gateway, for `context.risk` in its Cedar policies.

A gateway's usage events go to the servers' monitors (which alert and respond); with
`monitor: {risk: true}` they also go to a `RiskFeed` in the gateway itself: a bounded buffer
(emit never blocks) drained by its own task through the same `RiskDetector` the servers run,
which raises the scores on the `RiskBoard` the gateway's policy engines read. Findings are
not acted on here: the servers raise the alerts and run the responses.
"""

from __future__ import annotations

import asyncio

import structlog

from tokenward.core.events import EventBuffer, UsageEvent, UsageSink
from tokenward.core.lifecycle import cancel_and_wait
from tokenward.monitor.risk import RiskDetector

log = structlog.get_logger(__name__)


class RiskFeed:
    def __init__(self, detector: RiskDetector, capacity: int = 10_000, interval: float = 0.2):
        self.detector = detector
        self.buffer = EventBuffer(capacity)
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def emit(self, event: UsageEvent) -> None:
        self.buffer.put(event)

    async def drain(self) -> int:
        done = 0
        while batch := self.buffer.take(2000):
            for event in batch:
                if isinstance(event, UsageEvent):
                    await self.detector.observe(event)
            done += len(batch)
            await asyncio.sleep(0)
        return done

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.drain()
            except Exception as exc:  # noqa: BLE001 - scoring must outlive one bad batch
                log.error("risk_feed_failed", error=type(exc).__name__)  # noqa: TRY400


class Tee:
    """One sink that emits into several (the relay to the servers and the local feed)."""

    def __init__(self, *sinks: UsageSink) -> None:
        self._sinks = sinks

    def emit(self, event: UsageEvent) -> None:
        for sink in self._sinks:
            sink.emit(event)
