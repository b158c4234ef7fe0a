"""OpenTelemetry tracing: optional (the `otel` extra) and off by default.

This module imports without OpenTelemetry installed. `span()` costs one global read when
tracing is off; `enable()` (called once at start-up when tracing is configured) makes it start
real spans. Everything that needs the SDK lives in `tokenward.ops.otel`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

MISSING_EXTRA = (
    "tracing is enabled but OpenTelemetry is not installed: pip install 'tokenward[otel]'"
)
_tracer: Tracer | None = None
_OFF: AbstractContextManager[Any] = contextlib.nullcontext()


class TracingUnavailable(RuntimeError):
    """Tracing was asked for without the `otel` extra installed."""


def sdk_disabled() -> bool:
    """OTEL_SDK_DISABLED=true turns tracing off whatever else says, as the spec asks."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def provider_for(service_name: str) -> TracerProvider:
    """A tracer provider exporting over OTLP as the standard OTEL_* variables configure it."""
    try:  # the optional extra, imported only when asked for
        otel = importlib.import_module("tokenward.ops.otel")
    except ImportError:
        raise TracingUnavailable(MISSING_EXTRA) from None
    provider: TracerProvider = otel.otlp_provider(service_name)
    return provider


def enable(provider: TracerProvider) -> None:
    """Let `span()` start spans from `provider` (start-up, once per process)."""
    global _tracer  # noqa: PLW0603 - one tracer per process, as OpenTelemetry's own globals
    _tracer = provider.get_tracer("tokenward")


def disable() -> None:
    """Back to no spans (tests that enabled tracing restore the default)."""
    global _tracer  # noqa: PLW0603
    _tracer = None


def span(name: str, attributes: Mapping[str, str | int | bool] | None = None) -> Any:
    """A context manager: a span named `name` when tracing is on, nothing otherwise.

    Attributes must be bounded, non-secret values (a grant type, never a token or client input).
    """
    tracer = _tracer
    if tracer is None:
        return _OFF
    return tracer.start_as_current_span(name, attributes=dict(attributes or {}))
