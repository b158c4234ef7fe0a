"""/readyz and, when `TOKENWARD_METRICS=on`, /metrics on the main listener."""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from tokenward.ops.readiness import (
    Check,
    Readiness,
    database_check,
    redis_check,
    revocation_check,
    signing_key_check,
)
from tokenward.server.dependencies import Metrics, Ready
from tokenward.server.edge import JSONResponse
from tokenward.server.parts import ServerParts

NO_STORE = {"cache-control": "no-store"}
# Set by reverse proxies: a request carrying one came from further away than this host.
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
router = APIRouter(include_in_schema=False)
metrics_router = APIRouter(include_in_schema=False)  # included when TOKENWARD_METRICS=on


def readiness_for(parts: ServerParts) -> Readiness:
    stores, metrics = parts.stores, parts.metrics
    checks: dict[str, Check] = {}
    if stores.engine is not None:
        checks["database"] = database_check(stores.engine, metrics)
    if stores.redis is not None:
        checks["redis"] = redis_check(stores.redis, metrics)
    checks["signing_key"] = signing_key_check(parts.keys.signing_keyrings())
    checks["revocations"] = revocation_check(parts.validator.revocations, parts.clock)
    return Readiness(checks)


def local_peer(request: Request) -> bool:
    """A loopback peer that no proxy forwarded: what /metrics on the main port answers."""
    if request.client is None or any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


@router.get("/readyz")
async def readyz(readiness: Ready) -> Response:
    ready, checks = await readiness.run()
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503, headers=NO_STORE)


@metrics_router.get("/metrics")
async def metrics(request: Request, registry: Metrics) -> Response:
    if not local_peer(request):
        return JSONResponse({"error": "not_found"}, status_code=404, headers=NO_STORE)
    payload = generate_latest(registry.registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST, headers=NO_STORE)
