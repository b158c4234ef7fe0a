"""The separate metrics listener (`TOKENWARD_METRICS=HOST:PORT`), as the gateway has one."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, start_http_server


def start_metrics_listener(host: str, port: int, registry: CollectorRegistry) -> Callable[[], None]:
    """Serve `registry` at http://HOST:PORT/metrics from a thread; returns the stop function."""
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


class MetricsListener:
    """`start_metrics_listener` as a `Background` of the deployment's lifespan."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        self._address = (host, port)
        self._registry = registry
        self._stop: Callable[[], None] | None = None

    async def start(self) -> None:
        self._stop = start_metrics_listener(*self._address, self._registry)

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None
