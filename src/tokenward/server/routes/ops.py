"""/readyz and, when `TOKENWARD_METRICS=on`, /metrics on the main listener."""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from tokenward.deploy.wiring import Services
from tokenward.ops.readiness import (
    Check,
    Readiness,
    database_check,
    redis_check,
    revocation_check,
    signing_key_check,
)
from tokenward.server.edge import JSONResponse

NO_STORE = {"cache-control": "no-store"}
# Set by reverse proxies: a request carrying one came from further away than this host.
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def readiness_for(services: Services) -> Readiness:
    stores, metrics = services.stores, services.metrics
    checks: dict[str, Check] = {}
    if stores.engine is not None:
        checks["database"] = database_check(stores.engine, metrics)
    if stores.redis is not None:
        checks["redis"] = redis_check(stores.redis, metrics)
    checks["signing_key"] = signing_key_check(list(services.keys.keyrings.values()))
    checks["revocations"] = revocation_check(services.validator.revocations, services.clock)
    return Readiness(checks)


def local_peer(request: Request) -> bool:
    """A loopback peer that no proxy forwarded: what /metrics on the main port answers."""
    if request.client is None or any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


def router(services: Services) -> APIRouter:
    api = APIRouter(include_in_schema=False)
    readiness = readiness_for(services)

    @api.get("/readyz")
    async def readyz() -> Response:
        ready, checks = await readiness.run()
        body = {"status": "ok" if ready else "unavailable", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503, headers=NO_STORE)

    if services.settings.metrics == "on":

        @api.get("/metrics")
        async def metrics(request: Request) -> Response:
            if not local_peer(request):
                return JSONResponse({"error": "not_found"}, status_code=404, headers=NO_STORE)
            payload = generate_latest(services.metrics.registry)
            return Response(payload, media_type=CONTENT_TYPE_LATEST, headers=NO_STORE)

    return api
