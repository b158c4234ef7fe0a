"""Detectors: each reads events, keeps its state in `UsageWindows`, and explains what it found.

Every finding names its target (token, session, subject, address) and says in a sentence what
was seen against what limit, so the alert can be acted on without reading code.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from tokenward.core.events import (
    ALLOW,
    LOGIN_FAILED,
    REFRESH_REUSE,
    REVOKED,
    SESSION_ENDED,
    VALIDATION_FAILURES,
    AuthEvent,
    Event,
    UsageEvent,
)
from tokenward.core.records import SessionRecord
from tokenward.core.windows import UsageWindows
from tokenward.monitor.alerts import Finding, Target
from tokenward.monitor.config import (
    FailureSettings,
    IpSpreadSettings,
    RateSettings,
    RefreshReuseSettings,
    SessionEndedSettings,
)

CACHE_ENTRIES = 10_000


def network_of(ip: str, group: str, ipv4_prefix: int = 24, ipv6_prefix: int = 64) -> str:
    """The address itself (`group="ip"`) or its network (`/24` IPv4, `/64` IPv6 by default)."""
    try:
        address = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if group == "ip":
        return str(address)
    prefix = ipv4_prefix if address.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class Detector(Protocol):
    name: str

    def accepts(self, event: Event) -> bool:
        """A cheap synchronous filter: `observe` is only awaited for events it accepts."""
        ...

    async def observe(self, event: Event, count: int = 1) -> list[Finding]:
        """`count`: how many identical events this one stands for (the monitor coalesces)."""
        ...


def _target(event: UsageEvent) -> Target:
    return Target(event.jti, event.sub, event.sid, event.client_id, event.ip)


def _short(value: str | None, size: int = 12) -> str:
    if value is None:
        return "-"
    return value if len(value) <= size else value[:size] + "…"


class IpSpreadDetector:
    """One token used from more than `max_networks` addresses or networks within `window`."""

    name = "ip_spread"

    def __init__(self, settings: IpSpreadSettings, windows: UsageWindows) -> None:
        self.settings = settings
        self._windows = windows
        self._networks: dict[str, str] = {}  # address -> network: parsing costs more than this
        # (jti, network) -> when last recorded: a pair seen again within a second (the bulk of
        # traffic under load) cannot change the count, so it skips the window.
        self._recent: dict[tuple[str, str], float] = {}

    def accepts(self, event: Event) -> bool:
        return isinstance(event, UsageEvent) and event.jti is not None and event.decision == ALLOW

    async def observe(self, event: Event, count: int = 1) -> list[Finding]:
        if not isinstance(event, UsageEvent) or event.jti is None:
            return []
        s = self.settings
        where = self._networks.get(event.ip)
        if where is None:
            if len(self._networks) >= CACHE_ENTRIES:
                self._networks.clear()
            where = network_of(event.ip, s.group, s.ipv4_prefix, s.ipv6_prefix)
            self._networks[event.ip] = where
        pair = (event.jti, where)
        last = self._recent.get(pair)
        if last is not None and 0 <= event.time - last < 1.0:
            return []
        if len(self._recent) >= CACHE_ENTRIES:
            self._recent.clear()
        self._recent[pair] = event.time
        seen = await self._windows.spread(f"spread:{event.jti}", where, event.time, s.window)
        if len(seen) <= s.max_networks:
            return []
        unit = "addresses" if s.group == "ip" else "networks"
        return [
            Finding(
                self.name,
                f"tok:{event.jti}",
                f"Token used from {len(seen)} {unit}",
                f"Token {_short(event.jti)} (subject {event.sub}, client {event.client_id}) was "
                f"used from {len(seen)} different {unit} within {s.window:g} s "
                f"({', '.join(seen[-8:])}); more than {s.max_networks} suggests it was copied.",
                _target(event),
                {"networks": list(seen), "window": s.window, "limit": s.max_networks},
                s.severity,
            )
        ]


class RateDetector:
    """Requests of a token or subject in the open bucket far above its own EWMA baseline:
    fires when `count >= max(min_requests, factor * max(baseline, 1))` (core/windows.py explains
    the baseline)."""

    name = "rate"

    def __init__(self, settings: RateSettings, windows: UsageWindows) -> None:
        self.settings = settings
        self._windows = windows

    def accepts(self, event: Event) -> bool:
        return isinstance(event, UsageEvent) and event.sub is not None

    async def observe(self, event: Event, count: int = 1) -> list[Finding]:
        if not isinstance(event, UsageEvent) or event.sub is None:
            return []
        s = self.settings
        keys = []
        if s.per_token and event.jti is not None:
            keys.append(("token", f"tok:{event.jti}", event.jti))
        if s.per_subject:
            keys.append(("subject", f"sub:{event.sub}", event.sub))
        findings = []
        for kind, key, value in keys:
            sample = await self._windows.rate(f"rate:{key}", event.time, s.bucket, s.alpha, count)
            limit = max(float(s.min_requests), s.factor * max(sample.baseline, 1.0))
            if sample.closed < s.warmup_buckets or sample.count < limit:
                continue
            target = _target(event)
            if kind == "subject":  # a subject-wide spike is not one token's doing
                target = Target(sub=event.sub, client_id=event.client_id, ip=event.ip)
            findings.append(
                Finding(
                    self.name,
                    key,
                    f"Request rate of {kind} far above its baseline",
                    f"The {kind} {_short(value, 24)} made {sample.count} requests in the current "
                    f"{s.bucket:g} s bucket against a baseline of {sample.baseline:.1f} per "
                    f"bucket (EWMA over {sample.closed} buckets); the limit is {limit:.0f} "
                    f"({s.factor:g} times the baseline, at least {s.min_requests}).",
                    target,
                    {
                        "count": sample.count,
                        "baseline": round(sample.baseline, 2),
                        "limit": limit,
                        "bucket": s.bucket,
                        "kind": kind,
                    },
                    s.severity,
                )
            )
        return findings


class RefreshReuseDetector:
    """A rotated refresh token presented again: the authorization server revoked the family."""

    name = "refresh_reuse"

    def __init__(self, settings: RefreshReuseSettings) -> None:
        self.settings = settings

    def accepts(self, event: Event) -> bool:
        return isinstance(event, AuthEvent) and event.kind == REFRESH_REUSE

    async def observe(self, event: Event, count: int = 1) -> list[Finding]:
        if not isinstance(event, AuthEvent):
            return []
        return [
            Finding(
                self.name,
                f"family:{event.family_id}",
                "Refresh token reused",
                f"A refresh token of subject {event.sub} (client {event.client_id}) that had "
                f"already been rotated was presented again from {event.ip}. Either the client "
                "or a thief holds a copy; the grant family and its access tokens are revoked.",
                Target(sub=event.sub, sid=event.sid, client_id=event.client_id, ip=event.ip),
                {"family_id": event.family_id},
                self.settings.severity,
            )
        ]


class FailureBurstDetector:
    """Failed token validations and failed sign-ins from one address within `window`."""

    name = "failures"

    def __init__(self, settings: FailureSettings, windows: UsageWindows) -> None:
        self.settings = settings
        self._windows = windows

    def accepts(self, event: Event) -> bool:
        return event.ip is not None and _is_failure(event)

    async def observe(self, event: Event, count: int = 1) -> list[Finding]:
        ip = event.ip
        if ip is None:
            return []
        s = self.settings
        failures = await self._windows.burst(f"fail:{ip}", event.time, s.window, count)
        if failures < s.threshold:
            return []
        what = "sign-ins" if isinstance(event, AuthEvent) else "token validations"
        return [
            Finding(
                self.name,
                f"ip:{ip}",
                f"Burst of failures from {ip}",
                f"{failures} failed token validations and sign-ins came from {ip} within "
                f"{s.window:g} s (the latest: failed {what}); the limit is {s.threshold}.",
                Target(ip=ip),
                {"count": failures, "window": s.window, "limit": s.threshold},
                s.severity,
            )
        ]


def _is_failure(event: Event) -> bool:
    if isinstance(event, AuthEvent):
        return event.kind == LOGIN_FAILED
    return event.decision != ALLOW and event.reason in VALIDATION_FAILURES


SessionLookup = Callable[[str], Awaitable[SessionRecord | None]]


class SessionEndedDetector:
    """A token used after its session ended: refused (someone still holds it after sign-out)
    or, worse, admitted (a validator has not seen the session's revocation yet)."""

    name = "session_ended"

    def __init__(
        self,
        settings: SessionEndedSettings,
        sessions: SessionLookup,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._lookup = sessions
        self._clock = clock
        self._ended: dict[str, tuple[float, float | None]] = {}  # sid -> (checked, ended_at)

    def accepts(self, event: Event) -> bool:
        return (
            isinstance(event, UsageEvent)
            and event.sid is not None
            and (event.decision == ALLOW or event.reason in (REVOKED, SESSION_ENDED))
        )

    async def observe(self, event: Event, count: int = 1) -> list[Finding]:
        if not isinstance(event, UsageEvent) or event.sid is None:
            return []
        ended_at = await self._ended_at(event.sid)
        if ended_at is None or event.time <= ended_at + self.settings.grace:
            return []
        admitted = event.decision == ALLOW
        outcome = "and was ADMITTED" if admitted else "and was refused"
        return [
            Finding(
                self.name,
                f"sid:{event.sid}",
                "Token used after its session ended",
                f"Token {_short(event.jti)} of subject {event.sub} (session {_short(event.sid)})"
                f" was presented from {event.ip} {event.time - ended_at:.0f} s after the "
                f"session ended {outcome}. After sign-out only a copy of the token is left.",
                _target(event),
                {"ended_at": ended_at, "admitted": admitted, "route": event.route},
                "high" if admitted else self.settings.severity,
            )
        ]

    async def _ended_at(self, sid: str) -> float | None:
        now = self._clock()
        cached = self._ended.get(sid)
        if cached is not None and (
            cached[1] is not None or now - cached[0] < self.settings.recheck
        ):
            return cached[1]
        record = await self._lookup(sid)
        ended_at = record.ended_at if record is not None else None
        if len(self._ended) >= 100_000:
            self._ended.clear()
        self._ended[sid] = (now, ended_at)
        return ended_at
