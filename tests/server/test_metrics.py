"""Prometheus metrics: what is counted, bounded labels, one registry per server, exposure."""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.conftest import FrozenClock
from tests.server.conftest import ISSUER, Server
from tests.server.flows import Pkce, authorize_params, hidden_interaction
from tests.server.test_storage_down import Unreachable
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import build_services, memory_stores
from tokenward.ops.metrics import LATENCY_BUCKETS, ServerMetrics
from tokenward.tokens.sealing import generate_master_key

pytestmark = pytest.mark.anyio


def samples(metrics: ServerMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: ServerMetrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, frozenset(labels.items())), 0.0)


async def test_issuance_counted_by_grant_and_outcome(server: Server) -> None:
    metrics = server.services.metrics
    assert (await server.token()).status_code == 200
    bad = await server.http.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("service", "wrong")
    )
    assert bad.status_code == 401
    weird_grant = "urn:attacker:" + "x" * 40
    await server.http.post(
        "/token", data={"grant_type": weird_grant}, auth=("service", server.secret)
    )
    await server.http.post("/token", data={}, auth=("service", server.secret))

    issued = "tokenward_tokens_issued_total"
    assert value(metrics, issued, grant_type="client_credentials", outcome="success") == 1
    assert value(metrics, issued, grant_type="client_credentials", outcome="invalid_client") == 1
    assert value(metrics, issued, grant_type="other", outcome="unsupported_grant_type") == 1
    assert value(metrics, issued, grant_type="missing", outcome="invalid_request") == 1
    count = "tokenward_token_request_duration_seconds_count"
    assert value(metrics, count, grant_type="client_credentials") == 2
    # A client-chosen value never becomes a label.
    text = generate_latest(metrics.registry).decode()
    assert "attacker" not in text
    assert "wrong" not in text


async def test_requests_by_endpoint_with_paths_bounded(server: Server) -> None:
    metrics = server.services.metrics
    await server.http.get("/jwks")
    await server.http.get("/no/such/path/secret-looking-thing")
    await server.http.get("/admin/api/clients/some-id")
    assert (
        value(
            metrics, "tokenward_http_requests_total", endpoint="/jwks", method="GET", status="200"
        )
        == 1
    )
    assert (
        value(
            metrics, "tokenward_http_requests_total", endpoint="other", method="GET", status="404"
        )
        == 1
    )
    assert value(metrics, "tokenward_http_request_duration_seconds_count", endpoint="/admin") == 1
    assert "secret-looking-thing" not in generate_latest(metrics.registry).decode()


async def test_revocations_and_introspection_outcomes(server: Server) -> None:
    metrics = server.services.metrics
    token = (await server.token(scope="read")).json()["access_token"]
    auth = ("service", server.secret)
    assert (await server.http.post("/introspect", data={"token": token}, auth=auth)).json()[
        "active"
    ]
    assert (await server.http.post("/revoke", data={"token": token}, auth=auth)).status_code == 200
    assert not (await server.http.post("/introspect", data={"token": token}, auth=auth)).json()[
        "active"
    ]
    await server.http.post("/introspect", data={"token": token}, auth=("service", "wrong"))
    assert value(metrics, "tokenward_revocations_total", kind="jti") == 1
    assert value(metrics, "tokenward_introspections_total", outcome="active") == 1
    assert value(metrics, "tokenward_introspections_total", outcome="inactive") == 1
    assert value(metrics, "tokenward_introspections_total", outcome="invalid_client") == 1


async def test_storage_errors_counted_by_backend(server: Server) -> None:
    authenticator = server.services.token_endpoint._authenticator
    healthy = authenticator._clients
    authenticator._clients = Unreachable(RedisConnectionError("down"))  # type: ignore[assignment]
    try:
        assert (await server.token()).status_code == 503
    finally:
        authenticator._clients = healthy
    metrics = server.services.metrics
    assert value(metrics, "tokenward_storage_errors_total", backend="redis", kind="connection") == 1
    issued = "tokenward_tokens_issued_total"
    assert (
        value(metrics, issued, grant_type="client_credentials", outcome="temporarily_unavailable")
        == 1
    )


async def test_sign_in_failures_counted(server: Server) -> None:
    page = await server.http.get("/authorize", params=authorize_params(Pkce.new()))
    response = await server.http.post(
        "/login",
        data={"interaction": hidden_interaction(page.text), "username": "alice", "password": "no"},
    )
    assert response.status_code == 401
    metrics = server.services.metrics
    assert value(metrics, "tokenward_sign_in_failures_total", reason="wrong_credentials") == 1


async def test_each_server_has_its_own_registry(server: Server, clock: FrozenClock) -> None:
    other = await build_services(
        Settings(issuer=ISSUER, master_key=generate_master_key()), memory_stores(clock), clock
    )
    await server.token()
    issued = "tokenward_tokens_issued_total"
    assert (
        value(server.services.metrics, issued, grant_type="client_credentials", outcome="success")
        == 1
    )
    assert value(other.metrics, issued, grant_type="client_credentials", outcome="success") == 0


def client_from(metrics_app: object, peer: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=metrics_app, client=(peer, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url=ISSUER)


async def test_metrics_off_by_default(server: Server) -> None:
    assert Settings().metrics == "off"
    assert (await server.http.get("/metrics")).status_code == 404


async def test_metrics_on_main_port_only_for_unforwarded_loopback(clock: FrozenClock) -> None:
    settings = Settings(issuer=ISSUER, master_key=generate_master_key(), metrics="on")
    services = await build_services(settings, memory_stores(clock), clock)
    app = server_app(services)
    async with client_from(app, "127.0.0.1") as local:
        response = await local.get("/metrics")
        assert response.status_code == 200
        assert "tokenward_tokens_issued_total" in response.text
        assert response.headers["content-type"].startswith("text/plain")
        proxied = await local.get("/metrics", headers={"x-forwarded-for": "203.0.113.9"})
        assert proxied.status_code == 404
        assert (
            await local.get("/metrics", headers={"forwarded": "for=1.2.3.4"})
        ).status_code == 404
    async with client_from(app, "203.0.113.9") as remote:
        assert (await remote.get("/metrics")).status_code == 404


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_separate_listener_serves_the_registry(clock: FrozenClock) -> None:
    port = free_port()
    settings = Settings(
        issuer=ISSUER, master_key=generate_master_key(), metrics=f"127.0.0.1:{port}"
    )
    services = await build_services(settings, memory_stores(clock), clock)
    services.metrics.sign_in_failed("throttled")
    app = server_app(services)
    async with app.router.lifespan_context(app), httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert 'tokenward_sign_in_failures_total{reason="throttled"} 1.0' in response.text
    with pytest.raises(httpx.ConnectError):  # stopped with the app
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{port}/metrics")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as main:
        assert (await main.get("/metrics")).status_code == 404  # not on the main port


@pytest.mark.parametrize("bad", ["yes", "9464", "host:", ":9464", "127.0.0.1:99999"])
def test_metrics_setting_is_checked(bad: str) -> None:
    with pytest.raises(ValidationError):
        Settings(metrics=bad)


def test_ipv6_listener_setting() -> None:
    assert Settings(metrics="[::1]:9464").metrics_listener == ("::1", 9464)


def test_the_lock_free_request_metrics_expose_what_prometheus_client_would() -> None:
    """The per-request counters and histograms are kept in plain dicts (ops/metrics.py); the
    same observations in prometheus-client's own Counter and Histogram give the same samples
    (bucket bounds included: a value equal to a bound counts in that bucket)."""
    ours = ServerMetrics(grant_types=["client_credentials"])
    registry = CollectorRegistry()
    requests = Counter(
        "tokenward_http_requests", "", ["endpoint", "method", "status"], registry=registry
    )
    seconds = Histogram(
        "tokenward_http_request_duration_seconds",
        "",
        ["endpoint"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    observed = [0.0, 0.005, 0.0050001, 0.1, 0.3, 10.0, 11.0, 2.5, 0.004]
    for number, value_seconds in enumerate(observed):
        status = 200 if number % 3 else 404
        ours.request("/token", "POST", status, value_seconds)
        ours.request("/admin/x", "BREW", status, value_seconds)
        requests.labels("/token", "POST", str(status)).inc()
        requests.labels("/admin", "other", str(status)).inc()
        seconds.labels("/token").observe(value_seconds)
        seconds.labels("/admin").observe(value_seconds)

    def wanted(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.name.endswith("_created")
            and family.name.startswith(("tokenward_http_requests", "tokenward_http_request_d"))
        }

    expected = wanted(generate_latest(registry).decode())
    assert len(expected) == 2 * (len(LATENCY_BUCKETS) + 3) + 4  # buckets, +Inf, count, sum
    assert wanted(generate_latest(ours.registry).decode()) == expected
