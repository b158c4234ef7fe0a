"""Tracing for the authorization server, when TOKENWARD_OTEL_ENABLED=true (the `otel` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.types import Scope

from tokenward.config import Settings
from tokenward.ops import tracing
from tokenward.ops.metrics import endpoint_label

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

SERVICE_NAME = "tokenward"


def configured_provider(settings: Settings) -> TracerProvider | None:
    """The OTLP provider when tracing is on; raises TracingUnavailable without the extra."""
    if not settings.otel_enabled or tracing.sdk_disabled():
        return None
    return tracing.provider_for(SERVICE_NAME)


def span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    """`POST /token`: the endpoint from a fixed set ("other" for the rest), never a raw path."""
    return f"{scope.get('method', 'HTTP')} {endpoint_label(scope['path'])}", {}


def install(app: FastAPI, provider: TracerProvider) -> None:
    from tokenward.ops.otel import RequestTracing  # noqa: PLC0415 - the optional extra

    tracing.enable(provider)
    app.add_middleware(RequestTracing, provider=provider, span_details=span_details)
