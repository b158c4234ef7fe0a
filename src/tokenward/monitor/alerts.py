"""Findings become alerts: deduplicated, kept for the console, written to the audit log.

A detector returns a `Finding` (what, about whom, why). The `AlertLog` turns it into an
`Alert` unless the same detector raised one for the same target within the cooldown, in which
case the open alert counts one more occurrence and nothing else happens (no second response, no
second webhook). Alerts are kept in a bounded log for the console.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

import orjson
import structlog


@dataclass(frozen=True, slots=True)
class Target:
    """Whom a finding is about; any part may be unknown."""

    jti: str | None = None
    sub: str | None = None
    sid: str | None = None
    client_id: str | None = None
    ip: str | None = None

    def actions(self) -> list[str]:
        """The responses that can apply to this target."""
        wanted = (
            ("revoke_token", self.jti),
            ("revoke_session", self.sid),
            ("revoke_subject", self.sub),
            ("block_ip", self.ip),
        )
        return [name for name, value in wanted if value]


@dataclass(frozen=True, slots=True)
class Finding:
    detector: str
    key: str  # what deduplication groups by, e.g. "tok:<jti>"
    title: str
    explanation: str  # one or two sentences a person can act on: what, how much, against what
    target: Target
    evidence: dict[str, Any] = field(default_factory=dict)
    severity: str = "medium"
    response: str | None = None  # overrides the detector's configured response (risk levels)


@dataclass(slots=True)
class Alert:
    id: str
    time: float
    detector: str
    severity: str
    title: str
    explanation: str
    target: Target
    evidence: dict[str, Any]
    key: str
    occurrences: int = 1
    last_seen: float = 0.0
    status: str = "open"  # open | resolved
    responses: list[dict[str, Any]] = field(default_factory=list)  # what was done, by whom

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "detector": self.detector,
            "severity": self.severity,
            "title": self.title,
            "explanation": self.explanation,
            "target": {k: getattr(self.target, k) for k in Target.__slots__},
            "evidence": self.evidence,
            "occurrences": self.occurrences,
            "last_seen": self.last_seen,
            "status": self.status,
            "responses": list(self.responses),
            "actions": self.target.actions(),
        }


class AlertLog:
    """The alerts the console shows, newest first, at most `capacity`."""

    def __init__(
        self, capacity: int = 1000, cooldown: float = 300.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._capacity = capacity
        self._cooldown = cooldown
        self._clock = clock
        self._alerts: OrderedDict[str, Alert] = OrderedDict()
        self._recent: dict[tuple[str, str], str] = {}  # (detector, key) -> alert id
        self.added = 0  # alerts ever raised here (a replay reads the new ones by it)

    def is_repeat(self, finding: Finding) -> bool:
        """Whether `add` would count this finding as a repeat of an alert raised here."""
        previous = self._alerts.get(self._recent.get((finding.detector, finding.key), ""))
        return previous is not None and self._clock() - previous.last_seen < self._cooldown

    def add(self, finding: Finding) -> Alert | None:
        """The new alert, or None when it only counted as a repeat of an open one."""
        now = self._clock()
        previous = self._alerts.get(self._recent.get((finding.detector, finding.key), ""))
        if previous is not None and now - previous.last_seen < self._cooldown:
            previous.occurrences += 1
            previous.last_seen = now
            return None
        alert = Alert(
            id=secrets.token_hex(8),
            time=now,
            detector=finding.detector,
            severity=finding.severity,
            title=finding.title,
            explanation=finding.explanation,
            target=finding.target,
            evidence=dict(finding.evidence),
            key=finding.key,
            last_seen=now,
        )
        self._alerts[alert.id] = alert
        self.added += 1
        self._recent[(finding.detector, finding.key)] = alert.id
        while len(self._alerts) > self._capacity:
            _, dropped = self._alerts.popitem(last=False)
            self._recent.pop((dropped.detector, dropped.key), None)
        return alert

    def get(self, alert_id: str) -> Alert | None:
        return self._alerts.get(alert_id)

    def recent(self, limit: int = 100) -> list[Alert]:
        return list(reversed(self._alerts.values()))[:limit]

    def count_open(self) -> int:
        return sum(1 for alert in self._alerts.values() if alert.status == "open")

    def record_response(self, alert: Alert, response: dict[str, Any]) -> None:
        alert.responses.append(response)

    def resolve(self, alert: Alert) -> None:
        alert.status = "resolved"


class SecurityAudit:
    """Audit lines as JSON through structlog, independent of the application's log setup.

    One line per alert, per response and per admin action; never a token or a secret.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._logger = structlog.wrap_logger(
            structlog.PrintLogger(stream or sys.stderr),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(serializer=_dumps),
            ],
        )

    def alert(self, alert: Alert) -> None:
        self._logger.warning("security_alert", **alert.as_dict())

    def response(self, alert_id: str | None, result: dict[str, Any]) -> None:
        self._logger.warning("security_response", alert_id=alert_id, **result)

    def admin_action(self, actor: str, action: str, via: str, **details: Any) -> None:
        self._logger.info("admin_action", actor=actor, action=action, via=via, **details)


def _dumps(value: Any, **_kwargs: Any) -> str:
    return orjson.dumps(value, default=str).decode()


SECRET_FIELDS = frozenset({"client_secret", "token", "registration_access_token"})


def without_secrets(view: dict[str, Any]) -> dict[str, Any]:
    """A result fit for an audit line: client secrets and tokens shown once removed."""
    return {k: v for k, v in view.items() if k not in SECRET_FIELDS}


def copy_alert(alert: Alert) -> Alert:
    return replace(alert, evidence=dict(alert.evidence), responses=list(alert.responses))
