"""Prometheus metrics for the gateway, served on a separate port (health.py, with the probes).

The hot path does not touch prometheus_client objects: each of their updates takes a mutex and
validates labels, which cost more than the rest of the policy together (docs/gateway.md). It
adds to plain dicts and lists instead (one event-loop thread writes them), and a custom
collector turns those into metric families when Prometheus scrapes, from copies taken in one
step each (a dict copy is atomic under the GIL, so a scrape never sees a torn dict).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from tokenward.gateway.model import METHODS

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
PREFIX = "tokenward_gateway"


class Hit:
    """A counter cell the hot path bumps with `inc()`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1


class GatewayMetrics(Collector):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # (route, method, status, decision, reason) -> count
        self._requests: dict[tuple[str, str, int, str, str], int] = {}
        # route -> [bucket counts..., +Inf count, sum]
        self._latency: dict[str, list[float]] = {}
        self._upstream_errors: dict[tuple[str, str], int] = {}
        self.cache_hit = Hit()
        self.cache_miss = Hit()
        # More families read at scrape time (the upstreams' health and breakers: traffic.py).
        self.sources: list[Callable[[], Iterable[Metric]]] = []
        self.registry.register(self)

    def observe(
        self, route: str, method: str, status: int, allowed: bool, reason: str, seconds: float
    ) -> None:
        if method not in METHODS:
            method = "OTHER"  # bounded label values
        key = (route, method, status, "allow" if allowed else "deny", reason)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        cells = self._latency.get(route)
        if cells is None:
            cells = self._latency[route] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        cells[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        cells[-1] += seconds

    def upstream_error(self, route: str, kind: str) -> None:
        key = (route, kind)
        self._upstream_errors[key] = self._upstream_errors.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        requests = self._requests.copy()
        yield from self._request_families(requests)
        yield self._latency_family(self._latency.copy())
        cache = CounterMetricFamily(
            f"{PREFIX}_token_cache",
            "Validator cache lookups (hit ratio = hit / all)",
            labels=["result"],
        )
        cache.add_metric(["hit"], self.cache_hit.value)
        cache.add_metric(["miss"], self.cache_miss.value)
        yield cache
        errors = CounterMetricFamily(
            f"{PREFIX}_upstream_errors", "Upstream failures by kind", labels=["route", "kind"]
        )
        for (route, kind), count in self._upstream_errors.copy().items():
            errors.add_metric([route, kind], count)
        yield errors
        for source in list(self.sources):
            yield from source()

    @staticmethod
    def _request_families(
        requests: dict[tuple[str, str, int, str, str], int],
    ) -> Iterator[Metric]:
        by_status: dict[tuple[str, str, str], int] = {}
        by_reason: dict[tuple[str, str, str], int] = {}
        for (route, method, status, decision, reason), count in requests.items():
            key = (route, method, str(status))
            by_status[key] = by_status.get(key, 0) + count
            why = (route, decision, reason)
            by_reason[why] = by_reason.get(why, 0) + count
        answered = CounterMetricFamily(
            f"{PREFIX}_requests", "Requests answered", labels=["route", "method", "status"]
        )
        for labels, count in by_status.items():
            answered.add_metric(list(labels), count)
        yield answered
        decisions = CounterMetricFamily(
            f"{PREFIX}_decisions",
            "Allow/deny decisions by reason",
            labels=["route", "decision", "reason"],
        )
        for labels, count in by_reason.items():
            decisions.add_metric(list(labels), count)
        yield decisions

    @staticmethod
    def _latency_family(latency: dict[str, list[float]]) -> Metric:
        family = HistogramMetricFamily(
            f"{PREFIX}_request_seconds",
            "Time from request to the end of the response",
            labels=["route"],
        )
        for route, live in latency.items():
            cells = list(live)  # one copy, so counts and sum agree
            running, buckets = 0.0, []
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), cells[:-1], strict=True):
                running += count
                buckets.append((_bound(bound), running))
            family.add_metric([route], buckets, sum_value=cells[-1])
        return family


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)
