"""Token, pushed authorization, introspection, revocation, JWKS and discovery endpoints."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.responses import Response

from tokenward.config import Settings
from tokenward.oauth.form import parse_form
from tokenward.oauth.introspection import Introspector
from tokenward.oauth.par import PushRequest
from tokenward.oauth.token_endpoint import NO_STORE, TokenEndpoint, TokenRequest
from tokenward.ops import tracing
from tokenward.ops.metrics import ServerMetrics
from tokenward.server.dependencies import (
    Config,
    Introspection,
    Keys,
    Metrics,
    Parts,
    Pushed,
    Revocation,
    Tokens,
)
from tokenward.server.direct import Endpoint
from tokenward.server.edge import (
    FORM_STATE,
    FormHeaders,
    JSONResponse,
    read_body,
    read_form,
    single_header,
)
from tokenward.server.parts import ServerParts
from tokenward.serving.tls import peer_certificate

JWT_INTROSPECTION = "application/token-introspection+jwt"
router = APIRouter()


@router.post("/token", summary="Token endpoint (RFC 6749 §3.2)", tags=["oauth"])
async def token(request: Request, endpoint: Tokens, metrics: Metrics, settings: Config) -> Response:
    return await _token(request, endpoint, metrics, settings)


async def _token(
    request: Request, endpoint: TokenEndpoint, metrics: ServerMetrics, settings: Settings
) -> Response:
    with metrics.token_request() as labels:
        headers = FormHeaders(request.scope)
        form = await read_form(request, settings.max_body_bytes, headers)
        labels.grant_type = form.params.get("grant_type")
        token_request = TokenRequest(
            params=form.params,
            resources=form.resources,
            authorization=headers.single(b"authorization"),
            dpop=headers.single(b"dpop"),
            client_ip=request.client.host if request.client else None,
            certificate=peer_certificate(request.scope),
        )
        grant = metrics.grant_label(labels.grant_type)  # bounded, as in metrics
        with tracing.span("tokenward.token", {"oauth.grant_type": grant}):
            result = await endpoint.handle(token_request)
    return JSONResponse(result.body, headers=result.headers)


@router.post("/par", summary="Pushed authorization request (RFC 9126)", tags=["oauth"])
async def par(request: Request, endpoint: Pushed, settings: Config) -> Response:
    body = await read_body(request, settings.max_body_bytes)
    form = parse_form(body, request.headers.get("content-type"))  # type, sizes, repeats
    setattr(request.state, FORM_STATE, form)  # for the refusal log's client_id
    # The pairs too, in order: the pushed request is kept as sent. parse_form accepted the
    # body, so this parses.
    pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
    result, headers = await endpoint.push(
        PushRequest(
            pairs=pairs,
            authorization=single_header(request, "authorization"),
            dpop=single_header(request, "dpop"),
            certificate=peer_certificate(request.scope),
        )
    )
    return JSONResponse(result, status_code=201, headers=headers)


@router.post("/introspect", summary="Token introspection (RFC 7662, RFC 9701)", tags=["oauth"])
async def introspect(
    request: Request, introspector: Introspection, metrics: Metrics, settings: Config
) -> Response:
    return await _introspect(request, introspector, metrics, settings)


async def _introspect(
    request: Request, introspector: Introspector, metrics: ServerMetrics, settings: Settings
) -> Response:
    headers = FormHeaders(request.scope)
    try:
        form = await read_form(request, settings.max_body_bytes, headers)
        caller, body = await introspector.introspect(
            form.params, headers.single(b"authorization"), peer_certificate(request.scope)
        )
    except BaseException as exc:
        metrics.introspection_failed(exc)
        raise
    metrics.introspected(body.get("active") is True)
    if JWT_INTROSPECTION in (headers.first(b"accept") or ""):
        jwt = introspector.as_jwt(caller, body)
        return Response(jwt, media_type=JWT_INTROSPECTION, headers=NO_STORE)
    return JSONResponse(body, headers=NO_STORE)


def direct_endpoints(parts: ServerParts) -> dict[tuple[str, str], Endpoint]:
    """The two busiest endpoints, served past the framework's routing and per-request layers
    (server/direct.py): they were a quarter of the token endpoint's time (docs/performance.md).
    Bound to the server's parts here, once, rather than looked up in the app's state on each
    request. The FastAPI routes above stay for the OpenAPI description and run the same code;
    errors are rendered by the same handlers."""
    endpoint, introspector = parts.token_endpoint, parts.introspector
    metrics, settings = parts.metrics, parts.settings

    async def direct_token(request: Request) -> Response:
        return await _token(request, endpoint, metrics, settings)

    async def direct_introspect(request: Request) -> Response:
        return await _introspect(request, introspector, metrics, settings)

    return {("POST", "/token"): direct_token, ("POST", "/introspect"): direct_introspect}


@router.post("/revoke", summary="Token revocation (RFC 7009)", tags=["oauth"])
async def revoke(request: Request, revoker: Revocation, settings: Config) -> Response:
    form = await read_form(request, settings.max_body_bytes)
    await revoker.revoke(
        form.params, single_header(request, "authorization"), peer_certificate(request.scope)
    )
    return Response(status_code=200, headers=NO_STORE)


@router.get("/jwks", summary="Public signing keys (RFC 7517)", tags=["discovery"])
async def jwks(keys: Keys, settings: Config) -> Response:
    max_age = settings.jwks_max_age
    return JSONResponse(keys.jwks(), headers={"cache-control": f"public, max-age={max_age}"})


@router.get("/.well-known/oauth-authorization-server", tags=["discovery"])
async def oauth_metadata(parts: Parts) -> Response:
    return JSONResponse(parts.metadata(openid=False))


@router.get("/.well-known/openid-configuration", tags=["discovery"])
async def openid_metadata(parts: Parts) -> Response:
    return JSONResponse(parts.metadata(openid=True))
