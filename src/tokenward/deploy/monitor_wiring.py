"""Builds a `Monitor` from its settings and the stores it acts on (called by wiring.py).

Part of the composition root: it chooses the memory backends (store/) when no shared ones are
given, which no module of monitor/ may import.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from tokenward.core.blocklist import IpBlocklist
from tokenward.core.ports import AlertClaims, SessionStore
from tokenward.core.windows import UsageWindows
from tokenward.datadir import open_private
from tokenward.monitor.alerts import AlertLog, SecurityAudit
from tokenward.monitor.config import DetectorSettings, MonitorSettings
from tokenward.monitor.detectors import (
    Detector,
    FailureBurstDetector,
    IpSpreadDetector,
    RateDetector,
    RefreshReuseDetector,
    SessionEndedDetector,
)
from tokenward.monitor.pipeline import Monitor
from tokenward.monitor.responder import Responder, RevocationWriter
from tokenward.monitor.risk import Locator, RiskBoard, RiskDetector, RiskScorer
from tokenward.monitor.stats import UsageStats
from tokenward.monitor.webhook import WebhookSender
from tokenward.store.errors import STORAGE_ERRORS
from tokenward.store.memory_blocklist import MemoryBlocklist
from tokenward.store.memory_windows import MemoryWindows


def build_monitor(
    settings: MonitorSettings,
    *,
    revocations: RevocationWriter,
    sessions: SessionStore,
    keep: float,
    clock: Callable[[], float] = time.time,
    windows: UsageWindows | None = None,
    blocklist: IpBlocklist | None = None,
    audit_stream: TextIO | None = None,
    claims: AlertClaims | None = None,
    locator: Locator | None = None,
    risk_board: RiskBoard | None = None,
) -> Monitor:
    """`keep`: seconds a revocation must be remembered (longest token lifetime + leeway)."""
    windows = windows if windows is not None else MemoryWindows(settings.max_keys)
    detectors: list[Detector] = []
    policies: dict[str, DetectorSettings] = {}
    candidates: list[tuple[DetectorSettings, Detector]] = [
        (settings.ip_spread, IpSpreadDetector(settings.ip_spread, windows)),
        (settings.rate, RateDetector(settings.rate, windows)),
        (settings.refresh_reuse, RefreshReuseDetector(settings.refresh_reuse)),
        (settings.failures, FailureBurstDetector(settings.failures, windows)),
        (
            settings.session_ended,
            SessionEndedDetector(settings.session_ended, sessions.get, clock),
        ),
    ]
    for policy, detector in candidates:
        policies[detector.name] = policy
        if policy.enabled:
            detectors.append(detector)
    risk = settings.risk
    board = None
    if risk.enabled:
        board = risk_board if risk_board is not None else build_risk_board(settings, clock)
        scorer = RiskScorer(risk, locator if locator is not None else open_locator(risk.geoip))
        detectors.append(RiskDetector(risk, scorer, board))
        policies["risk"] = DetectorSettings(block_seconds=risk.block_seconds)
    responder = Responder(
        revocations,
        sessions,
        blocklist if blocklist is not None else MemoryBlocklist(clock),
        keep=keep,
        exempt=settings.failures.exempt_networks,
        clock=clock,
    )
    audit = SecurityAudit(audit_stream) if audit_stream else open_security_audit(settings.audit_log)
    return Monitor(
        settings,
        detectors=detectors,
        policies=policies,
        alerts=AlertLog(settings.max_alerts, settings.cooldown, clock),
        responder=responder,
        stats=UsageStats(settings.stats_bucket, settings.stats_buckets),
        audit=audit,
        webhook=_webhook(settings),
        clock=clock,
        storage_errors=STORAGE_ERRORS,
        claims=claims,
        risk=board,
    )


def _webhook(settings: MonitorSettings) -> WebhookSender | None:
    hook = settings.webhook
    if hook.url is None:
        return None
    if hook.secret is None or len(hook.secret.get_secret_value()) < 16:
        raise ValueError("a monitoring webhook needs a secret of at least 16 characters")
    return WebhookSender(
        hook.url,
        hook.secret.get_secret_value().encode(),
        timeout=hook.timeout,
        max_attempts=hook.max_attempts,
        base_delay=hook.base_delay,
        max_delay=hook.max_delay,
        capacity=hook.capacity,
    )


def open_security_audit(path: str | None) -> SecurityAudit | None:
    """The monitor's audit lines: standard error by default, none for "off", else a file
    created 0600 (an older one tightened): alerts name addresses, users and token ids."""
    if path == "off":
        return None
    if path is None:
        return SecurityAudit()
    fd = open_private(Path(path))
    return SecurityAudit(open(fd, "a", buffering=1, encoding="utf-8"))  # kept for the process


def build_risk_board(settings: MonitorSettings, clock: Callable[[], float]) -> RiskBoard:
    """The scores `context.risk` and the console read (one per process, shared by both)."""
    return RiskBoard(settings.risk.hold, settings.risk.max_entities, clock)


def open_locator(path: str | None) -> Locator | None:
    """Places for impossible travel from a MaxMind City database, when one is configured."""
    if path is None:
        return None
    from tokenward.monitor.risk_geo import MaxMindPlaces  # noqa: PLC0415 - optional extra

    return MaxMindPlaces(path)
