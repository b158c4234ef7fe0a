"""Tracing across the gateway: W3C traceparent reaches the upstream as a child of the gateway's
span in the client's trace; no token, secret or query string lands in a span attribute."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tests.gateway.conftest import BASE_CONFIG, serve
from tokenward.gateway.app import Gateway
from tokenward.gateway.audit import AuditLog
from tokenward.gateway.config import parse_config
from tokenward.gateway.proxy import Proxy
from tokenward.gateway.serving import http_protocol
from tokenward.gateway.tracing import app_for, traced
from tokenward.guard import Validator

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
QUERY_SECRET = "query-secret-Qw9"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def build(validator: Validator, clock: FrozenClock, upstream_url: str, extra: str = "") -> Gateway:
    text = BASE_CONFIG.format(upstream=upstream_url, issuer=ISSUER, audience=AUDIENCE) + extra
    audit = AuditLog(None)  # type: ignore[arg-type]  # a stand-in without a stream
    return Gateway(parse_config(text, "test.yaml"), validator, clock=clock, audit=audit)


@pytest.fixture
def traced_base(
    validator: Validator, clock: FrozenClock, upstream_url: str, exporter: InMemorySpanExporter
) -> Iterator[str]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = traced(build(validator, clock, upstream_url), provider)
    with serve(app, http=http_protocol()) as base:
        yield base


def finished(exporter: InMemorySpanExporter, count: int) -> tuple[ReadableSpan, ...]:
    # The server span ends just after the answer went out: wait (bounded) for it.
    deadline = time.monotonic() + 5
    while len(spans := exporter.get_finished_spans()) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    return spans


def test_traceparent_reaches_the_upstream_as_a_child_span(
    traced_base: str, exporter: InMemorySpanExporter, mint: Callable[..., str]
) -> None:
    token = mint()
    response = httpx.get(
        f"{traced_base}/items/x?q={QUERY_SECRET}",
        headers={
            "authorization": f"Bearer {token}",
            "traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01",
            "tracestate": "vendor=client",
        },
    )
    assert response.status_code == 200, response.text
    upstream_saw = response.json()["headers"]
    assert len(upstream_saw["traceparent"]) == 1  # replaced, not added beside the client's
    _version, trace_id, parent, _flags = upstream_saw["traceparent"][0].split("-")
    assert trace_id == TRACE_ID
    assert parent != CLIENT_SPAN
    spans = finished(exporter, 2)
    server = next(span for span in spans if span.kind == SpanKind.SERVER)
    client = next(span for span in spans if span.kind == SpanKind.CLIENT)
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == CLIENT_SPAN
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id
    assert format(client.context.span_id, "016x") == parent  # the upstream's parent: the call
    assert client.attributes is not None
    assert client.attributes["tokenward.route"] == "items"
    for span in spans:
        text = f"{span.name} {dict(span.attributes or {})}"
        assert token not in text
        assert token.rsplit(".", 1)[-1] not in text
        assert QUERY_SECRET not in text
        assert "/items/x" not in span.name  # span names carry no client path


def test_a_trace_starts_at_the_gateway_without_traceparent(
    traced_base: str, exporter: InMemorySpanExporter
) -> None:
    response = httpx.get(f"{traced_base}/open/y")
    assert response.status_code == 200
    sent = response.json()["headers"]["traceparent"][0]
    spans = finished(exporter, 2)
    assert {format(span.context.trace_id, "032x") for span in spans} == {sent.split("-")[1]}


def test_off_the_gateway_is_served_as_is(
    validator: Validator, clock: FrozenClock, upstream_url: str
) -> None:
    gateway = build(validator, clock, upstream_url)
    assert app_for(gateway, gateway.config) is gateway
    assert type(gateway.proxy) is Proxy  # the hot path is untouched
    with serve(gateway, http=http_protocol()) as base:
        incoming = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
        response = httpx.get(f"{base}/open/z", headers={"traceparent": incoming})
    assert response.json()["headers"]["traceparent"] == [incoming]  # passed through unchanged


def test_config_key(validator: Validator, clock: FrozenClock, upstream_url: str) -> None:
    assert build(validator, clock, upstream_url, "tracing:\n  enabled: true\n").config.tracing
    assert not build(validator, clock, upstream_url, "tracing:\n  enabled: false\n").config.tracing
    assert not build(validator, clock, upstream_url).config.tracing
