"""Server tracing: the request span continues the caller's trace, token issuance gets its own
span, and no secret, token or query string becomes an attribute. Off by default."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.conftest import FrozenClock
from tests.server.conftest import ISSUER, Server
from tests.server.flows import Pkce, authorize_params
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import build_services, memory_stores
from tokenward.ops import tracing
from tokenward.server.tracing import configured_provider
from tokenward.tokens.sealing import generate_master_key

pytestmark = pytest.mark.anyio
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


@pytest.fixture
async def traced(
    server: Server, clock: FrozenClock
) -> AsyncIterator[tuple[httpx.AsyncClient, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = server_app(server.services, tracer_provider=provider)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            yield http, exporter
    finally:
        tracing.disable()


async def test_token_request_spans(
    traced: tuple[httpx.AsyncClient, InMemorySpanExporter], server: Server
) -> None:
    http, exporter = traced
    response = await http.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "read"},
        auth=("service", server.secret),
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"},
    )
    assert response.status_code == 200
    token = response.json()["access_token"]
    spans = exporter.get_finished_spans()
    request = next(span for span in spans if span.kind == SpanKind.SERVER)
    issuance = next(span for span in spans if span.name == "tokenward.token")
    assert request.name == "POST /token"
    assert format(request.context.trace_id, "032x") == TRACE_ID
    assert issuance.parent is not None
    assert issuance.parent.span_id == request.context.span_id
    assert dict(issuance.attributes or {}) == {"oauth.grant_type": "client_credentials"}
    for span in spans:
        text = f"{span.name} {dict(span.attributes or {})}"
        assert server.secret not in text
        assert token.rsplit(".", 1)[-1] not in text


async def test_query_strings_and_raw_paths_stay_out(
    traced: tuple[httpx.AsyncClient, InMemorySpanExporter],
) -> None:
    http, exporter = traced
    params = authorize_params(Pkce.new(), state="state-secret-Xy7")
    assert (await http.get("/authorize", params=params)).status_code == 200
    await http.get("/unknown/path-secret-Zz1")
    for span in exporter.get_finished_spans():
        text = f"{span.name} {dict(span.attributes or {})}"
        assert "state-secret-Xy7" not in text
        assert "code_challenge" not in text
        assert "path-secret-Zz1" not in span.name
    names = {span.name for span in exporter.get_finished_spans()}
    assert {"GET /authorize", "GET other"} <= names


async def test_off_by_default(clock: FrozenClock) -> None:
    settings = Settings(issuer=ISSUER, master_key=generate_master_key())
    assert configured_provider(settings) is None
    services = await build_services(settings, memory_stores(clock), clock)
    server_app(services)
    assert tracing.span("x") is tracing.span("y")  # the shared no-op: no spans anywhere


def test_enabled_without_the_extra_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tokenward.ops.otel", None)  # as if not installed
    settings = Settings(issuer=ISSUER, master_key=generate_master_key(), otel_enabled=True)
    with pytest.raises(tracing.TracingUnavailable, match=r"pip install 'tokenward\[otel\]'"):
        configured_provider(settings)


def test_otel_sdk_disabled_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    settings = Settings(issuer=ISSUER, master_key=generate_master_key(), otel_enabled=True)
    assert configured_provider(settings) is None


async def test_a_global_provider_set_by_someone_else_records_no_query(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`opentelemetry-instrument`, FASTAPI_OTEL_AUTO_CONFIGURE or an embedding program may set
    OpenTelemetry's global provider. FastAPI's own telemetry would then record every request's
    `url.query` (`?access_token=`, `code=`) in clear: the server turns it off and traces only
    through its own spans, which name the endpoint and nothing the client sent."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(otel_trace, "get_tracer_provider", lambda: provider)
    app = server_app(server.services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http:
        await http.get("/userinfo", params={"access_token": "at-secret-Qw3"})
        await http.get("/authorize", params={"code": "code-secret-Er4", "state": "s-Ty5"})
    assert exporter.get_finished_spans() == ()
