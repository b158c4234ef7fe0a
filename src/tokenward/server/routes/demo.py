"""A small protected API served beside the authorization server, so `make run` shows the whole
loop: get a token, call an API with it, revoke it, see the call refused."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from tokenward.core.claims import AccessToken
from tokenward.deploy.wiring import Services
from tokenward.resource.fastapi import require_scopes


def router(services: Services) -> APIRouter:
    api = APIRouter(prefix="/api", tags=["demo API"])
    # Built here, not inside the annotation: FastAPI evaluates string annotations against module
    # globals, where `services` does not exist.
    read_scope = require_scopes("read", validator=services.validator)

    @api.get("/hello", summary="A protected demo resource (needs scope read)")
    async def hello(token: AccessToken = Depends(read_scope)) -> dict[str, Any]:  # noqa: B008
        return {"hello": token.sub, "client_id": token.client_id, "scope": token.scope}

    return api
