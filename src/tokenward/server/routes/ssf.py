"""Shared Signals (SSF 1.0) and back-channel logout at the edge: the transmitter's metadata,
stream management and poll endpoints (an access token with scope `ssf.manage`; a client sees
only its own streams), and the receiver's push endpoint (RFC 8935), which authenticates the
SET itself, not the caller (docs/continuous-access.md)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from tokenward.core.claims import AccessToken
from tokenward.oauth.errors import InvalidRequest
from tokenward.oauth.ssf.streams import StreamError
from tokenward.ops.refusals import log_refusal
from tokenward.resource.fastapi import require_scopes
from tokenward.server.dependencies import Signals
from tokenward.server.edge import JSONResponse, client_ip, read_body
from tokenward.services.shared_signals import (
    ADD_SUBJECT,
    CONFIGURATION,
    MANAGE_SCOPE,
    POLL,
    RECEIVE,
    REMOVE_SUBJECT,
    STATUS,
    STREAMS,
    VERIFY,
)
from tokenward.services.ssf_receiver import MAX_SET_BYTES, SetRefused

router = APIRouter(tags=["shared signals"])
Manager = Annotated[AccessToken, Depends(require_scopes(MANAGE_SCOPE))]
MAX_JSON_BYTES = 64 * 1024
NO_STORE = {"cache-control": "no-store"}


def _error(exc: StreamError) -> Response:
    return JSONResponse(
        {
            "error": _ERROR_CODES.get(exc.status, "invalid_request"),
            "error_description": exc.description,
        },
        status_code=exc.status,
        headers=NO_STORE,
    )


_ERROR_CODES = {404: "not_found", 409: "conflict", 429: "too_many_requests"}


async def _json(request: Request) -> dict[str, Any]:
    body = await read_body(request, MAX_JSON_BYTES)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise StreamError(400, "the body must be a JSON object") from None
    if not isinstance(value, dict):
        raise StreamError(400, "the body must be a JSON object")
    return value


def _stream_id(request: Request) -> str | None:
    values = request.query_params.getlist("stream_id")
    if len(values) > 1:
        raise StreamError(400, "stream_id is repeated")
    return values[0] if values else None


@router.get(CONFIGURATION, summary="Shared Signals transmitter metadata (SSF 1.0 §7)")
async def configuration(signals: Signals) -> Response:
    return JSONResponse(signals.configuration(), headers={"cache-control": "max-age=300"})


@router.post(STREAMS, summary="Create a stream", status_code=201)
async def create_stream(request: Request, token: Manager, signals: Signals) -> Response:
    try:
        view = await signals.streams.create(_owner(token), await _json(request))
    except StreamError as exc:
        return _error(exc)
    return JSONResponse(view, status_code=201, headers=NO_STORE)


@router.get(STREAMS, summary="Read a stream's configuration, or every stream of the caller")
async def read_stream(request: Request, token: Manager, signals: Signals) -> Response:
    try:
        view = await signals.streams.read(_owner(token), _stream_id(request))
    except StreamError as exc:
        return _error(exc)
    return JSONResponse(view, headers=NO_STORE)


@router.patch(STREAMS, summary="Update a stream's configuration")
async def update_stream(request: Request, token: Manager, signals: Signals) -> Response:
    return await _update(request, token, signals, replace_all=False)


@router.put(STREAMS, summary="Replace a stream's configuration")
async def replace_stream(request: Request, token: Manager, signals: Signals) -> Response:
    return await _update(request, token, signals, replace_all=True)


async def _update(
    request: Request, token: AccessToken, signals: Signals, *, replace_all: bool
) -> Response:
    try:
        view = await signals.streams.update(
            _owner(token), await _json(request), replace_all=replace_all
        )
    except StreamError as exc:
        return _error(exc)
    return JSONResponse(view, headers=NO_STORE)


@router.delete(STREAMS, summary="Delete a stream", status_code=204)
async def delete_stream(request: Request, token: Manager, signals: Signals) -> Response:
    try:
        await signals.streams.delete(_owner(token), _stream_id(request))
    except StreamError as exc:
        return _error(exc)
    return Response(status_code=204)


@router.get(STATUS, summary="A stream's status")
async def stream_status(request: Request, token: Manager, signals: Signals) -> Response:
    try:
        view = await signals.streams.status(_owner(token), _stream_id(request))
    except StreamError as exc:
        return _error(exc)
    return JSONResponse(view, headers=NO_STORE)


@router.post(STATUS, summary="Enable, pause or disable a stream")
async def set_stream_status(request: Request, token: Manager, signals: Signals) -> Response:
    try:
        view = await signals.streams.set_status(_owner(token), await _json(request))
    except StreamError as exc:
        return _error(exc)
    return JSONResponse(view, headers=NO_STORE)


@router.post(ADD_SUBJECT, summary="Add a subject to a stream")
async def add_subject(request: Request, token: Manager, signals: Signals) -> Response:
    try:
        await signals.streams.add_subject(_owner(token), await _json(request))
    except StreamError as exc:
        return _error(exc)
    return Response(status_code=200)


@router.post(REMOVE_SUBJECT, summary="Remove a subject from a stream", status_code=204)
async def remove_subject(request: Request, token: Manager, signals: Signals) -> Response:
    try:
        await signals.streams.remove_subject(_owner(token), await _json(request))
    except StreamError as exc:
        return _error(exc)
    return Response(status_code=204)


@router.post(VERIFY, summary="Ask for a verification event", status_code=204)
async def verify(request: Request, token: Manager, signals: Signals) -> Response:
    try:
        await signals.streams.verify(_owner(token), await _json(request))
    except StreamError as exc:
        return _error(exc)
    return Response(status_code=204)


@router.post(POLL + "/{stream_id}", summary="Poll a stream's SETs (RFC 8936)")
async def poll(stream_id: str, request: Request, token: Manager, signals: Signals) -> Response:
    try:
        stream = await signals.streams.owned(_owner(token), stream_id)
        answer = await signals.poll.poll(stream, await _json(request))
    except StreamError as exc:
        return _error(exc)
    return JSONResponse(answer, headers=NO_STORE)


@router.post(RECEIVE, summary="Receive a pushed SET (RFC 8935)", status_code=202)
async def receive(request: Request, signals: Signals) -> Response:
    try:
        await signals.receiver.receive(await _set_of(request))
    except SetRefused as exc:  # RFC 8935 §2.3
        # The reason, never the SET: an operator sees a misconfigured transmitter in the log.
        log_refusal(RECEIVE, exc.err, exc.description, client_id=None, client_ip=client_ip(request))
        return JSONResponse(
            {"err": exc.err, "description": exc.description}, status_code=400, headers=NO_STORE
        )
    return Response(status_code=202)


async def _set_of(request: Request) -> str:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/secevent+jwt":
        raise SetRefused("invalid_request", "the body must be application/secevent+jwt")
    try:
        body = await read_body(request, MAX_SET_BYTES)
    except InvalidRequest:
        raise SetRefused("invalid_request", "the SET is too large") from None
    try:
        return body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise SetRefused("invalid_request", "a SET is ASCII") from None


def _owner(token: AccessToken) -> str:
    if not token.client_id:
        raise StreamError(403, "the access token names no client")
    return token.client_id
