"""The authorization server's Prometheus metrics, in a registry of their own.

One `ServerMetrics` per `Services` (per process in production): tests that build many servers
in one process never collide in prometheus_client's global registry. Every label takes a value
from a fixed set chosen here (grant types the server supports, registered error codes, known
endpoints); anything else a client sends becomes "other", so cardinality stays bounded.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
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
    """Counts and times one token request (a context manager): the caller sets `grant_type`
    once the form is read; the outcome is the error code the request raised, if any. A class,
    not a generator: a third of the cost."""

    __slots__ = ("_metrics", "_started", "grant_type")

    def __init__(self, metrics: ServerMetrics) -> None:
        self.grant_type: str | None = None
        self._metrics = metrics
        self._started = 0.0

    def __enter__(self) -> TokenRequestLabels:
        self._started = time.perf_counter()
        return self

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        metrics = self._metrics
        grant = metrics.grant_label(self.grant_type)
        outcome = "success" if error is None else error_label(error)
        metrics.tokens_issued.inc((grant, outcome))
        metrics.token_seconds.observe((grant,), time.perf_counter() - self._started)


class _Tally:
    """A counter's values by their labels, in a plain dict. Every label value comes from a
    bounded set (above), so the dict is bounded too."""

    __slots__ = ("counts", "documentation", "labels", "name")

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.counts: dict[tuple[str, ...], float] = {}

    def inc(self, values: tuple[str, ...]) -> None:
        counts = self.counts
        counts[values] = counts.get(values, 0.0) + 1.0

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, count in list(self.counts.items()):  # a copy: one C call, no switch inside
            family.add_metric(values, count)
        return family


class _Spread:
    """A histogram's bucket counts and sum by their labels (LATENCY_BUCKETS)."""

    __slots__ = ("documentation", "labels", "name", "series")

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        # Per label values: one count per bucket (the last for +Inf), then the sum.
        self.series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, values: tuple[str, ...], seconds: float) -> None:
        series = self.series.get(values)
        if series is None:
            series = self.series[values] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        series[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1.0  # the first bound >= it
        series[-1] += seconds

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        bounds = [*(repr(float(bound)) for bound in LATENCY_BUCKETS), "+Inf"]  # as prometheus
        for values, series in list(self.series.items()):
            counts = list(itertools.accumulate(series[:-1]))
            family.add_metric(values, list(zip(bounds, counts, strict=True)), series[-1])
        return family


class _Hot(Collector):
    """The metrics counted on every request. They are updated only on the event loop's thread
    (the request path), so they need no lock; a scrape reads them on that thread too (the
    /metrics route), and a copy of each dict is taken in one step anyway."""

    def __init__(self) -> None:
        self._metrics: list[_Tally | _Spread] = []

    def counter(self, name: str, documentation: str, labels: tuple[str, ...]) -> _Tally:
        tally = _Tally(name, documentation, labels)
        self._metrics.append(tally)
        return tally

    def histogram(self, name: str, documentation: str, labels: tuple[str, ...]) -> _Spread:
        spread = _Spread(name, documentation, labels)
        self._metrics.append(spread)
        return spread

    def collect(self) -> Iterator[Metric]:
        for metric in self._metrics:
            yield metric.family()


class ServerMetrics:
    def __init__(self, grant_types: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        self.grant_types = frozenset(grant_types)
        registry = self.registry
        # The per-request metrics, counted on the event loop's thread without a lock
        # (prometheus-client takes one per increment: 4.4 µs of a token request, timeit).
        hot = _Hot()
        self.tokens_issued = hot.counter(
            "tokenward_tokens_issued",
            "Token endpoint requests by grant type and outcome (success or the error code)",
            ("grant_type", "outcome"),
        )
        self.token_seconds = hot.histogram(
            "tokenward_token_request_duration_seconds",
            "Token endpoint latency by grant type",
            ("grant_type",),
        )
        self.http_seconds = hot.histogram(
            "tokenward_http_request_duration_seconds",
            "Request latency by endpoint (the main endpoints; /admin and /api grouped)",
            ("endpoint",),
        )
        self.http_requests = hot.counter(
            "tokenward_http_requests",
            "Requests answered, by endpoint, method and status",
            ("endpoint", "method", "status"),
        )
        self.introspections = hot.counter(
            "tokenward_introspections",
            "Introspection answers: active, inactive, or the error code",
            ("outcome",),
        )
        registry.register(hot)
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
        self.sign_in_failures = Counter(
            "tokenward_sign_in_failures",
            "Failed password sign-ins by reason",
            ["reason"],
            registry=registry,
        )

    def grant_label(self, grant_type: str | None) -> str:
        if grant_type is None:
            return "missing"
        return grant_type if grant_type in self.grant_types else OTHER

    def token_request(self) -> TokenRequestLabels:
        """Count and time one token request: `with metrics.token_request() as labels:`."""
        return TokenRequestLabels(self)

    def introspected(self, active: bool) -> None:
        """One introspection answered: active or inactive."""
        self.introspections.inc(("active" if active else "inactive",))

    def introspection_failed(self, error: BaseException) -> None:
        """One introspection refused: counted by the error code it raised."""
        self.introspections.inc((error_label(error),))

    def request(self, path: str, method: str, status: int, seconds: float) -> None:
        endpoint = endpoint_label(path)
        self.http_requests.inc((endpoint, method if method in METHODS else OTHER, str(status)))
        self.http_seconds.observe((endpoint,), seconds)

    def revoked(self, kind: str) -> None:
        self.revocations.labels(kind if kind in RevocationKind.ALL else OTHER).inc()

    def storage_error(self, error: BaseException) -> None:
        self.storage_errors.labels(*storage_labels(error)).inc()

    def sign_in_failed(self, reason: str) -> None:
        self.sign_in_failures.labels(reason if reason in SIGN_IN_REASONS else OTHER).inc()
