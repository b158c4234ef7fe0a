"""The monitor: the sink producers emit into, and the task that turns events into alerts.

    producers ──emit()──▶ EventBuffer (bounded, never blocks)
                               │ drained every `drain_interval` s, `batch` at a time
                               ▼
              UsageStats (console)   detectors ──Finding──▶ AlertLog (dedup, console)
                                                               │ new alert
                                   Responder (configured response) ◀┘ → audit log, webhook

Nothing here runs on the request path but `emit`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from tokenward.core.blocklist import IpBlocklist
from tokenward.core.events import AuthEvent, Event, EventBuffer, Queued, RawUsage, UsageEvent
from tokenward.core.lifecycle import Background, cancel_and_wait
from tokenward.core.ports import AlertClaims
from tokenward.monitor.alerts import Alert, AlertLog, Finding, SecurityAudit
from tokenward.monitor.config import DetectorSettings, MonitorSettings
from tokenward.monitor.detectors import Detector
from tokenward.monitor.responder import Responder, ResponseError
from tokenward.monitor.risk import RiskBoard
from tokenward.monitor.stats import UsageStats
from tokenward.monitor.webhook import WebhookSender

log = structlog.get_logger(__name__)


def coalesce(batch: list[Queued]) -> list[tuple[Event, int]]:
    """Identical usage events within one second become one event with a count (the latest
    stands for the group); under load most of a batch is one token hammering one route, and
    this makes the analysis cost per distinct (token, address, outcome, second), not per
    request. Authorization-server events are kept one by one."""
    groups: dict[tuple[object, ...], list[Any]] = {}
    singles: list[tuple[Event, int]] = []
    for item in batch:
        if isinstance(item, AuthEvent):
            singles.append((item, 1))
            continue
        key = _group_key(item)
        group = groups.get(key)
        if group is None:
            groups[key] = [item, 1]
        else:
            group[0] = item
            group[1] += 1
    usage = [(_usage(item), count) for item, count in groups.values()]
    return [*singles, *usage]


def _group_key(item: UsageEvent | RawUsage) -> tuple[object, ...]:
    # jti, sub, client_id, route, ip, status, decision, reason, sid, second (, path)
    if isinstance(item, UsageEvent):
        return (
            (item.jti, item.sub, item.client_id, item.route, item.ip),
            (item.status, item.decision, item.reason, item.sid),
            int(item.time),
            item.path,
        )
    return (item[1:6], item[7:11], int(item[0]))


def _usage(item: UsageEvent | RawUsage) -> UsageEvent:
    if isinstance(item, UsageEvent):
        return item
    when, jti, sub, client_id, route, ip, agent, status, decision, reason, sid, source = item
    if isinstance(agent, bytes):  # the middleware leaves decoding to the monitor's task
        agent = agent.decode("latin-1")
    return UsageEvent(
        when, jti, sub, client_id, route, ip, agent, status, decision, reason, sid, source
    )


class Monitor:
    def __init__(
        self,
        settings: MonitorSettings,
        *,
        detectors: Sequence[Detector],
        policies: Mapping[str, DetectorSettings],
        alerts: AlertLog,
        responder: Responder,
        stats: UsageStats,
        audit: SecurityAudit | None = None,
        webhook: WebhookSender | None = None,
        clock: Callable[[], float] = time.time,
        storage_errors: tuple[type[Exception], ...] = (ConnectionError, TimeoutError),
        claims: AlertClaims | None = None,
        risk: RiskBoard | None = None,
    ) -> None:
        self.settings = settings
        self.risk = risk  # learned risk scores per subject and address (console, policies)
        self.enabled = settings.enabled
        self.buffer = EventBuffer(settings.buffer)
        self.detectors = list(detectors)
        self._policies = policies
        self.alerts = alerts
        self.responder = responder
        self.blocklist: IpBlocklist = responder.blocklist
        self.stats = stats
        self.audit = audit
        self.webhook = webhook
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self.processed = 0
        self.detector_errors = 0
        # Started and stopped with the monitor: the gateways' event stream, a shared blocklist.
        self.companions: list[Background] = []
        # Scaled out: one alert per (detector, target) for the deployment, not one per server.
        self.claims = claims
        # What `claims` raises when its store is unreachable (store.errors.STORAGE_ERRORS, from
        # the composition root): the monitor imports no storage driver.
        self._storage_errors = storage_errors
        self.claimed_elsewhere = 0

    # --- the sink (request path) ---------------------------------------------------------
    def emit(self, event: Event) -> None:
        """Queue an event; never blocks, never raises. Full buffer: dropped and counted."""
        if self.enabled:
            self.buffer.put(event)

    def emit_fields(self, *fields: Any) -> None:
        """The same as `emit(UsageEvent(*fields))`, cheaper on the request path: the fields,
        in UsageEvent's order (all twelve), are queued as a tuple and become an event later."""
        if self.enabled:
            self.buffer.put(fields)

    def is_blocked(self, ip: str) -> bool:
        return self.blocklist.is_blocked(ip)

    # --- the consumer --------------------------------------------------------------------
    async def drain(self) -> int:
        """Process every event queued so far; returns how many."""
        done = 0
        while True:
            batch = self.buffer.take(self.settings.batch)
            if not batch:
                return done
            for event, count in coalesce(batch):
                await self._process(event, count)
            done += len(batch)
            await asyncio.sleep(0)  # a long backlog must not starve the requests

    async def _process(self, event: Event, count: int) -> None:
        self.processed += count
        self.stats.record(event, count)
        for detector in self.detectors:
            if not detector.accepts(event):
                continue
            try:
                findings = await detector.observe(event, count)
            except Exception as exc:  # noqa: BLE001 - one detector's bug must not stop the rest
                self.detector_errors += 1
                log.error("detector_failed", detector=detector.name, error=type(exc).__name__)  # noqa: TRY400
                continue
            for finding in findings:
                await self.raise_alert(finding)

    async def raise_alert(self, finding: Finding) -> Alert | None:
        if self.claims is not None and not self.alerts.is_repeat(finding):
            try:
                first = await self.claims.claim(
                    finding.detector, finding.key, self.settings.cooldown
                )
            except self._storage_errors as exc:
                # Unreachable: raise it here. A duplicate alert beats a missed one.
                log.warning("alert_claim_unavailable", error=type(exc).__name__)
                first = True
            if not first:
                self.claimed_elsewhere += 1
                return None
        alert = self.alerts.add(finding)
        if alert is None:
            return None
        policy = self._policies.get(finding.detector, DetectorSettings())
        action = finding.response or policy.response
        try:
            if action == "step_up":  # already in force: the detector raised context.risk
                result = {
                    "action": action,
                    "by": f"monitor:{finding.detector}",
                    "at": self.clock(),
                    "done": "context.risk raised: policies that step up on risk challenge",
                }
            else:
                result = await self.responder.respond(
                    action,
                    alert.target,
                    by=f"monitor:{finding.detector}",
                    reason=alert.title,
                    block_seconds=policy.block_seconds,
                )
        except ResponseError as exc:
            result = {"action": action, "by": "monitor", "done": str(exc), "failed": True}
        self.alerts.record_response(alert, result)
        if self.audit is not None:
            self.audit.alert(alert)
        if self.webhook is not None:
            self.webhook.submit(alert.id, {"type": "tokenward.alert", "alert": alert.as_dict()})
        return alert

    async def respond(self, alert_id: str, action: str, by: str) -> Alert:
        """A response chosen by an admin (one click); raises ResponseError or KeyError."""
        alert = self.alerts.get(alert_id)
        if alert is None:
            raise KeyError(alert_id)
        if action == "resolve":
            self.alerts.resolve(alert)
            result: dict[str, Any] = {"action": action, "by": by, "at": self.clock()}
        else:
            result = await self.responder.respond(
                action,
                alert.target,
                by=by,
                reason=alert.title,
                block_seconds=self._policies.get(alert.detector, DetectorSettings()).block_seconds,
            )
        self.alerts.record_response(alert, result)
        if self.audit is not None:
            self.audit.response(alert.id, result)
        return alert

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the consumer (and the webhook sender) on the running loop."""
        if self._task is None and self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run())
        if self.webhook is not None:
            self.webhook.start()
        if self.enabled:
            for companion in self.companions:
                await companion.start()

    async def stop(self) -> None:
        for companion in reversed(self.companions):
            await companion.stop()
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        await self.drain()
        if self.webhook is not None:
            await self.webhook.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.drain_interval)
            try:
                await self.drain()
            except Exception as exc:  # noqa: BLE001 - the monitor must outlive one bad batch
                log.error("monitor_drain_failed", error=type(exc).__name__)  # noqa: TRY400

    def health(self) -> dict[str, Any]:
        webhook = self.webhook
        return {
            "enabled": self.enabled,
            "queued": len(self.buffer),
            "received": self.buffer.received,
            "dropped": self.buffer.dropped,
            "processed": self.processed,
            "detector_errors": self.detector_errors,
            "open_alerts": self.alerts.count_open(),
            "blocked_ips": len(self.blocklist.entries()),
            "webhook": None
            if webhook is None
            else {
                "url": webhook.url,
                "delivered": webhook.delivered,
                "failed": webhook.failed,
                "dropped": webhook.dropped,
            },
        }
