"""Dynamic client registration at the edge (RFC 7591 §3, RFC 7592 §2): JSON in, JSON out, errors
rendered by the OAuth error handler (400 with the RFC 7591 code; 401 with a Bearer challenge
for a missing or wrong token). Mounted only when TOKENWARD_REGISTRATION is not `off`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from tokenward.core.errors import JoseError
from tokenward.oauth.errors import InvalidClientMetadata
from tokenward.server.dependencies import Registration
from tokenward.server.edge import JSONResponse, client_ip, read_body, single_header
from tokenward.tokens.jws import loads_object

router = APIRouter(tags=["registration"])
MAX_JSON_BYTES = 64 * 1024  # a client's metadata, JWKS and statement included
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


async def _metadata(request: Request) -> Any:
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media != "application/json":
        raise InvalidClientMetadata("the body must be application/json")
    body = await read_body(request, MAX_JSON_BYTES)
    try:  # strict: a member given twice could mean one thing here and another to a proxy
        return loads_object(body)
    except JoseError:
        raise InvalidClientMetadata("the body must be a JSON object, each member once") from None


@router.post("/register", summary="Register a client (RFC 7591)", status_code=201)
async def register(request: Request, registration: Registration) -> Response:
    answer = await registration.register(
        await _metadata(request), single_header(request, "authorization"), client_ip(request)
    )
    return JSONResponse(answer, status_code=201, headers=NO_STORE)


@router.get("/register/{client_id}", summary="Read a registration (RFC 7592 §2.1)")
async def read(client_id: str, request: Request, registration: Registration) -> Response:
    answer = await registration.read(client_id, single_header(request, "authorization"))
    return JSONResponse(answer, headers=NO_STORE)


@router.put("/register/{client_id}", summary="Replace a registration (RFC 7592 §2.2)")
async def update(client_id: str, request: Request, registration: Registration) -> Response:
    authorization = single_header(request, "authorization")
    answer = await registration.update(client_id, authorization, await _metadata(request))
    return JSONResponse(answer, headers=NO_STORE)


@router.delete("/register/{client_id}", summary="Delete a registration (RFC 7592 §2.3)")
async def delete(client_id: str, request: Request, registration: Registration) -> Response:
    await registration.delete(client_id, single_header(request, "authorization"))
    return Response(status_code=204, headers=NO_STORE)
