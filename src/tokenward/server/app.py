"""The authorization server application: routes, error rendering, background key schedule."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.types import ASGIApp

from tokenward import __version__
from tokenward.core.lifecycle import Background, running
from tokenward.resource.fastapi import install_bearer_error_handler
from tokenward.server import dependencies, tracing
from tokenward.server.access_log import AccessLog
from tokenward.server.client_address import ClientAddressMiddleware
from tokenward.server.console import ConsolePages
from tokenward.server.direct import DirectEndpoints, Endpoint
from tokenward.server.edge import install_error_handlers
from tokenward.server.monitor_middleware import MonitorMiddleware
from tokenward.server.outer import Observe, Outer
from tokenward.server.pages import Browser
from tokenward.server.parts import ServerParts
from tokenward.server.routes import (
    account,
    admin,
    admin_api,
    browser,
    demo,
    device,
    docs,
    factors,
    oauth,
    oidc,
    ops,
    portal,
    registration,
    ssf,
)
from tokenward.server.routes import revocations as revocation_feed
from tokenward.serving.tls import ProxyCertificateMiddleware

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


def create_app(
    services: ServerParts,
    *,
    background: Sequence[Background],
    tracer_provider: TracerProvider | None = None,
    access_log: AccessLog | None = None,
) -> FastAPI:
    """`services`: what the composition root built (wiring.Services satisfies ServerParts).
    `background`: what the deployment runs beside the app (the composition root decides),
    started in order at startup and stopped in reverse at shutdown. `tracer_provider`: trace
    with it (tests); else as TOKENWARD_OTEL_ENABLED says. `access_log`: where the access log
    goes (`tokenward serve`: a buffered writer on stdout); None: the `tokenward.access`
    logger."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with running(background):
            yield

    app = _ServerApp(
        title="tokenward",
        version=__version__,
        description="OAuth 2.1 / OpenID Connect authorization server",
        lifespan=lifespan,
        docs_url=None,  # served by routes.docs from local assets, not FastAPI's CDN page
        redoc_url=None,  # ReDoc would load from a CDN too
        # FastAPI's own telemetry turns on whenever OpenTelemetry's global provider is set (by
        # auto-instrumentation, FASTAPI_OTEL_AUTO_CONFIGURE, an embedding program) and records
        # each request's path and query, tokens and codes included. The server traces through
        # its own spans (server/tracing.py), which name the endpoint and nothing sent.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.hsts = services.settings.hsts_header
    app.observe = services.metrics.request  # Outer times every request, as the access log
    app.access = access_log
    _fill_state(app, services)
    install_error_handlers(app)
    install_bearer_error_handler(app)  # RFC 6750 bodies for the demo API
    app.direct = oauth.direct_endpoints(services)  # shadow their FastAPI twins (kept for OpenAPI)
    for module in (
        oauth,
        browser,
        factors,
        account,
        device,
        oidc,
        demo,
        admin,
        admin_api,
        ops,
        docs,
        ssf,
    ):
        app.include_router(module.router)
    _optional_routes(app, services)
    if services.monitor.enabled:  # blocked addresses refused; usage of /api/ and /userinfo
        app.add_middleware(
            MonitorMiddleware,
            monitor=services.monitor,
            validators=(services.validator, services.userinfo),
            prefixes=services.monitor.settings.api_prefixes,
        )

    provider = tracer_provider or tracing.configured_provider(services.settings)
    if provider is not None:
        tracing.install(app, provider)  # the request span covers everything below
    if services.settings.trusted_networks:  # without trusted proxies it would change nothing
        # Added last, so outermost: every layer inside sees the client behind trusted proxies.
        app.add_middleware(ClientAddressMiddleware, trusted=services.settings.trusted_networks)
    if services.settings.mtls_certificate_header:
        # Outside ClientAddressMiddleware: the header is believed from the connection's peer,
        # before X-Forwarded-For replaces it with the client's address.
        app.add_middleware(
            ProxyCertificateMiddleware,
            header=services.settings.mtls_certificate_header,
            trusted=services.settings.trusted_networks,
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _optional_routes(app: FastAPI, services: ServerParts) -> None:
    """The routers a deployment turns on in its settings."""
    if services.settings.metrics == "on":
        app.include_router(ops.metrics_router)
    if services.settings.revocation_feed:
        app.include_router(revocation_feed.router)
    if services.portal is not None:  # the developer portal: on when it has a catalogue
        app.include_router(portal.router)
    if services.registration.enabled:  # RFC 7591: off unless the operator turns it on
        app.include_router(registration.router)


def _fill_state(app: FastAPI, services: ServerParts) -> None:
    """What the route modules' dependency providers (server/dependencies.py) read."""
    state = app.state
    setattr(state, dependencies.PARTS, services)
    setattr(state, dependencies.BROWSER, Browser(services.settings.issuer, services.csrf))
    setattr(state, dependencies.READINESS, ops.readiness_for(services))
    console = ConsolePages(services.settings.issuer, services.csrf, services.sessions)
    setattr(state, dependencies.CONSOLE, console)
    state.tokenward_validator = services.validator  # require_scopes: the demo and admin APIs


def direct_routes(app: FastAPI) -> frozenset[tuple[str, str]]:
    """The (method, path) pairs `app` answers past the framework (server/direct.py): what
    `tokenward serve` also serves past uvicorn's per-request cycle (serving/express.py)."""
    return frozenset(app.direct) if isinstance(app, _ServerApp) else frozenset()


class _ServerApp(FastAPI):
    """FastAPI, with the deployment's middleware outside the framework's own layers and the
    direct endpoints (server/direct.py) between the two, all inside `Outer`:

        Outer > the deployment's middleware > DirectEndpoints > FastAPI's stack (error,
        exception, body-limit and exit-stack middleware, the router)

    FastAPI puts the deployment's middleware inside its error middleware; `Outer` answers a
    failure there with the same 500 body instead."""

    hsts: str | None = None
    access: AccessLog | None = None
    observe: Observe | None = None
    direct: Mapping[tuple[str, str], Endpoint] = {}

    def build_middleware_stack(self) -> ASGIApp:
        deployment, self.user_middleware = self.user_middleware, []
        try:
            framework = super().build_middleware_stack()
        finally:
            self.user_middleware = deployment
        app: ASGIApp = DirectEndpoints(framework, self.direct, self.exception_handlers)
        for middleware in reversed(deployment):
            app = middleware.cls(app, *middleware.args, **middleware.kwargs)
        return Outer(app, hsts=self.hsts, access=self.access, observe=self.observe)
