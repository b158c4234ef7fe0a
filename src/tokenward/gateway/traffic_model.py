"""A route's `traffic:` section as frozen values (docs/gateway.md, "Traffic management").

Each part is optional and off by default: a route without `traffic:` is forwarded exactly as
before (round robin, the next upstream on a refused connection), at no cost on its hot path.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenward.gateway.model import Upstream

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})  # RFC 9110 §9.2.2 (no TRACE)


@dataclass(frozen=True)
class CanaryRule:
    """One rule: the first that matches sends the request to group `to`."""

    to: str
    header: bytes | None = None  # lower-case field name
    value: bytes | None = None  # None: the header's presence is enough
    subjects: float | None = None  # percent of token subjects, sticky per subject
    percent: float | None = None  # percent of requests


@dataclass(frozen=True)
class ActiveHealth:
    path: str
    interval: float = 5.0
    timeout: float = 1.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3


@dataclass(frozen=True)
class PassiveHealth:
    failures: int = 1  # consecutive failures on real traffic that take an upstream out
    cooloff: float = 10.0  # seconds it stays out


@dataclass(frozen=True)
class Retries:
    attempts: int = 1  # retries after the first try
    deadline: float = 10.0  # no retry starts this many seconds after the first try did
    statuses: frozenset[int] = frozenset({502, 503, 504})


@dataclass(frozen=True)
class BreakerSettings:
    failures: int = 5  # consecutive failures that open the circuit
    cooloff: float = 30.0  # seconds open before one probe may pass (half-open)


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 100  # requests in flight to one upstream (each holds a connection)
    max_pending: int = 0  # requests allowed to wait for a free one; beyond: 503
    pending_timeout: float = 1.0  # how long one may wait


@dataclass(frozen=True)
class TrafficPolicy:
    groups: tuple[tuple[str, tuple[Upstream, ...]], ...] = ()
    # Per group (same order as `groups`): its upstreams' weights, None when all weigh 1.
    group_weights: tuple[tuple[int, ...] | None, ...] = ()
    canary: tuple[CanaryRule, ...] = ()
    active: ActiveHealth | None = None
    passive: PassiveHealth | None = None
    retries: Retries | None = None
    breaker: BreakerSettings | None = None
    limits: ConnectionLimits | None = None
