"""Tracing for the gateway (config `tracing: {enabled: true}`, the `otel` extra).

Off, nothing here runs and the request path is the plain `Gateway`: not one branch is added.
On, the gateway is wrapped in the request span middleware, and its proxy is swapped for one
that opens a client span per upstream call and sends that span's W3C `traceparent` upstream in
place of the client's, so the upstream's spans join the same trace as the gateway's children.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from tokenward.gateway.app import Gateway
from tokenward.gateway.headers import Incoming
from tokenward.gateway.model import GatewayConfig, Route
from tokenward.gateway.proxy import Balancer, Proxy
from tokenward.gateway.upstream import Pool
from tokenward.ops import tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

Headers = list[tuple[bytes, bytes]]
SERVICE_NAME = "tokenward-gateway"


class TracedProxy(Proxy):
    def __init__(self, pool: Pool, tracer: Tracer) -> None:
        super().__init__(pool)
        self._tracer = tracer

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        balancer: Balancer,
        incoming: Incoming,
        added: Headers,
        response_extra: Headers,
    ) -> int:
        from opentelemetry.propagate import inject  # noqa: PLC0415 - the optional extra
        from opentelemetry.trace import SpanKind  # noqa: PLC0415

        # Only the route's name and the status: no path, query or header value (client input).
        attributes = {"tokenward.route": route.name, "http.request.method": scope["method"]}
        with self._tracer.start_as_current_span(
            f"{scope['method']} upstream", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            carrier: dict[str, str] = {}
            inject(carrier)
            replaced = {name.encode("latin-1") for name in carrier}
            incoming.headers = [pair for pair in incoming.headers if pair[0] not in replaced]
            propagated = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in carrier.items()]
            status = await super().forward(
                scope, receive, send, route, balancer, incoming, [*added, *propagated],
                response_extra,
            )  # fmt: skip
            span.set_attribute("http.response.status_code", status)
            return status


def traced(gateway: Gateway, provider: TracerProvider) -> ASGIApp:
    """The gateway with request and upstream spans from `provider`."""
    from tokenward.ops.otel import RequestTracing  # noqa: PLC0415 - the optional extra

    gateway.proxy = TracedProxy(gateway.proxy.pool, provider.get_tracer("tokenward.gateway"))
    return RequestTracing(gateway, provider)


def app_for(gateway: Gateway, config: GatewayConfig) -> ASGIApp:
    """What to serve: the gateway itself unless the config turns tracing on."""
    if not config.tracing or tracing.sdk_disabled():
        return gateway
    return traced(gateway, tracing.provider_for(SERVICE_NAME))
