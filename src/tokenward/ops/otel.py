"""The OpenTelemetry pieces (needs the `otel` extra): an OTLP provider, and the request span
middleware with the query string kept out of every attribute."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from starlette.types import ASGIApp, Receive, Scope, Send

# Header values never recorded, even when OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_* asks.
SANITIZED_HEADERS = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "dpop",
    ".*token.*",
    ".*secret.*",
    ".*session.*",
    ".*key.*",
]
EXCLUDED_PATHS = "/healthz,/readyz,/metrics"  # probes and scrapes: noise, not traffic
_QUERY = "tokenward.query_string"
SpanDetails = Callable[[Scope], tuple[str, dict[str, Any]]]


def otlp_provider(service_name: str) -> TracerProvider:
    """OTLP over HTTP; endpoint, headers and resource come from the standard OTEL_* variables."""
    attributes = {} if "OTEL_SERVICE_NAME" in os.environ else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def method_only(scope: Scope) -> tuple[str, dict[str, Any]]:
    """A span name without the path: paths are client input (unbounded, maybe signed links)."""
    return str(scope.get("method") or scope["type"]), {}


class RequestTracing:
    """OpenTelemetry's ASGI middleware, handed a scope without the query string (tokens and
    codes travel there) so no attribute can carry it; the app still gets the original."""

    def __init__(
        self, app: ASGIApp, provider: TracerProvider, span_details: SpanDetails = method_only
    ) -> None:
        self.app = app
        self.traced = OpenTelemetryMiddleware(
            _restore_query(app),
            excluded_urls=EXCLUDED_PATHS,
            default_span_details=span_details,
            tracer_provider=provider,
            http_capture_headers_sanitize_fields=SANITIZED_HEADERS,
            exclude_spans=["receive", "send"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scrubbed = {**scope, "query_string": b"", _QUERY: scope.get("query_string", b"")}
        await self.traced(scrubbed, receive, send)


def _restore_query(app: ASGIApp) -> ASGIApp:
    async def restored(scope: Scope, receive: Receive, send: Send) -> None:
        original = {k: v for k, v in scope.items() if k != _QUERY}
        original["query_string"] = scope.get(_QUERY, b"")
        await app(original, receive, send)

    return restored
