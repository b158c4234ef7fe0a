"""The authorization server's Prometheus metrics, in a registry of their own.

One `ServerMetrics` per `Services` (per process in production): tests that build many servers
in one process never collide in prometheus_client's global registry. Every label takes a value
from a fixed set chosen here (grant types the server supports, registered error codes, known
endpoints); anything else a client sends becomes "other", so cardinality stays bounded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from tokenward.core.records import RevocationKind
from tokenward.oauth import errors
from tokenward.store.errors import STORAGE_ERRORS

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OTHER = "other"
# Registered codes only: an error class added later without a code here still counts, as other.
ERROR_CODES = frozenset(
    cls.error for cls in vars(errors).values() if isinstance(cls, type) and hasattr(cls, "error")
)
ENDPOINTS = frozenset(
    {
        "/token",
        "/par",
        "/authorize",
        "/introspect",
        "/revoke",
        "/device_authorization",
        "/device",
        "/device/decision",
        "/userinfo",
        "/login",
        "/consent",
        "/logout",
        "/jwks",
        "/revocations",  # long-polls: its latency is the hold time, by design
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/healthz",
        "/readyz",
        "/metrics",
    }
)
PREFIXES = ("/admin", "/api")  # grouped: their paths carry ids
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SIGN_IN_REASONS = frozenset({"wrong_credentials", "wrong_second_factor", "throttled"})
INTROSPECTION_OUTCOMES = frozenset({"active", "inactive"})


def endpoint_label(path: str) -> str:
    if path in ENDPOINTS:
        return path
    for prefix in PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    return OTHER


def error_label(error: BaseException) -> str:
    """The outcome of a failed request: its OAuth error code, or what a 5xx answer says."""
    if isinstance(error, errors.OAuthError):
        return error.error if error.error in ERROR_CODES else OTHER
    if isinstance(error, STORAGE_ERRORS):
        return "temporarily_unavailable"
    return "server_error"


def storage_labels(error: BaseException) -> tuple[str, str]:
    """(backend, kind) of a storage failure, both from fixed sets."""
    backend = "redis" if isinstance(error, RedisError) else "database"
    if isinstance(error, PoolTimeoutError):
        return backend, "pool_timeout"
    if isinstance(error, TimeoutError | RedisTimeoutError):
        return backend, "timeout"
    if isinstance(error, ConnectionError | OSError) or "connect" in type(error).__name__.lower():
        return backend, "connection"
    return backend, OTHER


class TokenRequestLabels:
    __slots__ = ("grant_type",)

    def __init__(self) -> None:
        self.grant_type: str | None = None


class _Children:
    """A metric's labelled children, kept: prometheus-client validates the values and takes a
    lock on every `labels()` call, four times per token request. Every label value here comes
    from a bounded set, so the dict is bounded too."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Counter | Histogram) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class ServerMetrics:
    def __init__(self, grant_types: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        self.grant_types = frozenset(grant_types)
        registry = self.registry
        self.tokens_issued = Counter(
            "tokenward_tokens_issued",
            "Token endpoint requests by grant type and outcome (success or the error code)",
            ["grant_type", "outcome"],
            registry=registry,
        )
        self.token_seconds = Histogram(
            "tokenward_token_request_duration_seconds",
            "Token endpoint latency by grant type",
            ["grant_type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.http_seconds = Histogram(
            "tokenward_http_request_duration_seconds",
            "Request latency by endpoint (the main endpoints; /admin and /api grouped)",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.http_requests = Counter(
            "tokenward_http_requests",
            "Requests answered, by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.revocations = Counter(
            "tokenward_revocations",
            "Revocations written, by kind (jti, sub, sid, client_id)",
            ["kind"],
            registry=registry,
        )
        self.storage_errors = Counter(
            "tokenward_storage_errors",
            "Database and Redis failures seen by requests and readiness probes",
            ["backend", "kind"],
            registry=registry,
        )
        self.introspections = Counter(
            "tokenward_introspections",
            "Introspection answers: active, inactive, or the error code",
            ["outcome"],
            registry=registry,
        )
        self.sign_in_failures = Counter(
            "tokenward_sign_in_failures",
            "Failed password sign-ins by reason",
            ["reason"],
            registry=registry,
        )

        self._issued = _Children(self.tokens_issued)
        self._token_seconds = _Children(self.token_seconds)
        self._http_seconds = _Children(self.http_seconds)
        self._http_requests = _Children(self.http_requests)
        self._introspections = _Children(self.introspections)

    def grant_label(self, grant_type: str | None) -> str:
        if grant_type is None:
            return "missing"
        return grant_type if grant_type in self.grant_types else OTHER

    @contextlib.contextmanager
    def token_request(self) -> Iterator[TokenRequestLabels]:
        """Count and time one token request. The caller sets `grant_type` once the form is read;
        the outcome is the error code the request raised, if any."""
        labels = TokenRequestLabels()
        started = time.perf_counter()
        outcome = "success"
        try:
            yield labels
        except BaseException as exc:
            outcome = error_label(exc)
            raise
        finally:
            grant = self.grant_label(labels.grant_type)
            self._issued(grant, outcome).inc()
            self._token_seconds(grant).observe(time.perf_counter() - started)

    def introspected(self, active: bool) -> None:
        """One introspection answered: active or inactive."""
        self._introspections("active" if active else "inactive").inc()

    def introspection_failed(self, error: BaseException) -> None:
        """One introspection refused: counted by the error code it raised."""
        self._introspections(error_label(error)).inc()

    def request(self, path: str, method: str, status: int, seconds: float) -> None:
        endpoint = endpoint_label(path)
        self._http_requests(endpoint, method if method in METHODS else OTHER, str(status)).inc()
        self._http_seconds(endpoint).observe(seconds)

    def revoked(self, kind: str) -> None:
        self.revocations.labels(kind if kind in RevocationKind.ALL else OTHER).inc()

    def storage_error(self, error: BaseException) -> None:
        self.storage_errors.labels(*storage_labels(error)).inc()

    def sign_in_failed(self, reason: str) -> None:
        self.sign_in_failures.labels(reason if reason in SIGN_IN_REASONS else OTHER).inc()
