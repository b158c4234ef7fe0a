"""One deployment's server: its services and the background work that runs beside the app, in
the order it starts (and stops in reverse). Used by `tokenward serve` and by whoever mounts the
server in their own ASGI app, so both run the same followers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from tokenward.core.lifecycle import Background
from tokenward.deploy.wiring import Services
from tokenward.ops.metrics_listener import MetricsListener
from tokenward.server.access_log import AccessLog
from tokenward.server.app import create_app
from tokenward.server.key_schedule import KeySchedule

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


def server_background(services: Services, worker: int | None = None) -> list[Background]:
    """The revocation feed first (it bootstraps the mirror every validator reads), then the
    key schedule, the monitor (with its companions), and the metrics listener if configured.
    `worker`: this process is that worker of `serve --workers N`: only worker 0 changes the
    keys (the others reload them), and its metrics listen on the configured port + `worker`."""
    background: list[Background] = [
        services.revocations,
        KeySchedule(services.keys, services.settings.key_schedule_seconds, changes=not worker),
        services.monitor,
        services.shared_signals,  # SET and logout-token deliveries
    ]
    listener = services.settings.metrics_listener
    if listener:
        host, port = listener
        background.append(MetricsListener(host, port + (worker or 0), services.metrics.registry))
    return background


def server_app(
    services: Services,
    *,
    tracer_provider: TracerProvider | None = None,
    worker: int | None = None,
    access_log: AccessLog | None = None,
) -> FastAPI:
    """The authorization server's ASGI app with its deployment's lifespan."""
    return create_app(
        services,
        background=server_background(services, worker),
        tracer_provider=tracer_provider,
        access_log=access_log,
    )
