"""The authorization server application: routes, error rendering, background key schedule."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp

from tokenward import __version__
from tokenward.monitor.asgi import MonitorMiddleware
from tokenward.resource.fastapi import install_bearer_error_handler
from tokenward.server.edge import install_error_handlers
from tokenward.server.outer import Outer
from tokenward.server.routes import admin, admin_api, browser, demo, device, oauth, oidc
from tokenward.wiring import Services

log = structlog.get_logger(__name__)
KEY_SCHEDULE_SECONDS = 60.0


def create_app(services: Services) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await services.revocations.start()  # bootstrap the mirror, then follow the log
        task = asyncio.create_task(_key_schedule(services))
        await services.monitor.start()
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await services.monitor.stop()
            await services.revocations.stop()

    app = _ServerApp(
        title="tokenward",
        version=__version__,
        description="OAuth 2.1 / OpenID Connect authorization server",
        lifespan=lifespan,
    )
    app.hsts = services.settings.hsts_header
    app.state.services = services
    app.state.tokenward_validator = services.validator
    install_error_handlers(app)
    install_bearer_error_handler(app)  # RFC 6750 bodies for the demo API
    app.include_router(oauth.router(services))
    app.include_router(browser.router(services))
    app.include_router(device.router(services))
    app.include_router(oidc.router(services))
    app.include_router(demo.router(services))
    app.include_router(admin.router(services))
    app.include_router(admin_api.router(services))
    if services.monitor.enabled:  # blocked addresses refused; usage of /api/ and /userinfo
        app.add_middleware(
            MonitorMiddleware,
            monitor=services.monitor,
            validators=(services.validator, services.userinfo),
            prefixes=services.monitor.settings.api_prefixes,
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


class _ServerApp(FastAPI):
    """FastAPI with `Outer` around the whole stack, Starlette's error middleware included."""

    hsts: str | None = None

    def build_middleware_stack(self) -> ASGIApp:
        return Outer(super().build_middleware_stack(), hsts=self.hsts)


async def _key_schedule(services: Services) -> None:
    while True:
        await asyncio.sleep(KEY_SCHEDULE_SECONDS)
        try:
            changed = await services.keys.tick()
        except Exception as exc:  # noqa: BLE001 - the schedule must outlive one failed tick
            log.error("key_schedule_failed", error=type(exc).__name__)  # noqa: TRY400 - no trace: it may hold secrets
            continue
        for key in changed:
            log.info("signing_key_state", kid=key.kid, state=key.state.value)
