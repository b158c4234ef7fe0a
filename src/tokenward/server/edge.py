"""Request reading and error rendering shared by every route: bounded bodies, one error format."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope

from tokenward.oauth.errors import InvalidRequest, OAuthError, ServerError, TemporarilyUnavailable
from tokenward.oauth.form import Form, parse_form
from tokenward.ops.metrics import ServerMetrics
from tokenward.ops.refusals import asserted_client_id, log_refusal
from tokenward.server.outer import UNEXPECTED, logged_path
from tokenward.store.errors import STORAGE_ERRORS

log = structlog.get_logger(__name__)
CLIENT_GONE = 499  # nginx's status for a request whose client closed the connection


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class FormHeaders:
    """The headers a form endpoint reads, found in one pass over the request's (Starlette's
    `Headers.get` walks the list and encodes the name once per lookup: five lookups were a
    tenth of an introspection). A value is the first one sent, as `Headers.get` gives;
    `single` refuses a header that must not repeat."""

    __slots__ = ("_found", "_repeated")
    NAMES = frozenset({b"content-length", b"content-type", b"authorization", b"dpop", b"accept"})

    def __init__(self, scope: Scope) -> None:
        found: dict[bytes, bytes] = {}
        repeated: set[bytes] = set()
        names = self.NAMES
        for name, value in scope["headers"]:
            if name in names:
                if name in found:
                    repeated.add(name)
                else:
                    found[name] = value
        self._found = found
        self._repeated = repeated

    def first(self, name: bytes) -> str | None:
        value = self._found.get(name)
        return None if value is None else value.decode("latin-1")

    def single(self, name: bytes) -> str | None:
        """The header's value; `invalid_request` if it was sent more than once."""
        if name in self._repeated:
            raise InvalidRequest(f"the {name.decode()} header is repeated")
        return self.first(name)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes without reading them all into memory."""
    return await _read_body(request.receive, request.headers.get("content-length"), limit)


async def _read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """From the ASGI messages directly, as Starlette's `stream()` reads them but without its
    async generator (a third of the body's cost on a one-message form). Read once: the routes
    that call this never read the body again."""
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise InvalidRequest("the request body is too large")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: the client left mid-body
            raise ClientDisconnect()
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise InvalidRequest("the request body is too large")
        if not message.get("more_body", False):
            if not chunks:
                return chunk  # one message: the usual form, nothing to join
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


FORM_STATE = "oauth_form"  # where read_form leaves the form, for the refusal log


async def read_form(request: Request, limit: int, headers: FormHeaders | None = None) -> Form:
    if headers is None:
        headers = FormHeaders(request.scope)
    body = await _read_body(request.receive, headers.first(b"content-length"), limit)
    form = parse_form(body, headers.first(b"content-type"))
    # Into the scope's state dict, which `request.state` wraps, without building the wrapper.
    request.scope.setdefault("state", {})[FORM_STATE] = form
    return form


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _log_refusal(request: Request, error: OAuthError) -> None:
    form = getattr(request.state, FORM_STATE, None)
    client_id = None
    if isinstance(form, Form):
        # The Authorization header goes in only to read the client_id part; nothing of it is kept.
        client_id = asserted_client_id(form.params, request.headers.get("authorization"))
    log_refusal(
        request.url.path,
        error.error,
        error.description,
        client_id=client_id,
        client_ip=client_ip(request),
    )


def _metrics(request: Request) -> ServerMetrics | None:
    services = getattr(request.app.state, "parts", None)  # dependencies.PARTS, set by create_app
    metrics = getattr(services, "metrics", None)
    return metrics if isinstance(metrics, ServerMetrics) else None


def single_header(request: Request, name: str) -> str | None:
    values = request.headers.getlist(name)
    if len(values) > 1:
        raise InvalidRequest(f"the {name} header is repeated")
    return values[0] if values else None


def oauth_error_response(error: OAuthError) -> JSONResponse:
    headers = {"cache-control": "no-store", "pragma": "no-cache", **error.headers}
    if error.status == 429:
        headers.setdefault("retry-after", "1")
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


async def _on_oauth_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, OAuthError):  # registered for OAuthError only
        raise exc
    if exc.status < 500:
        _log_refusal(request, exc)
    return oauth_error_response(exc)


async def _on_http_error(_request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StarletteHTTPException):  # registered for this class only
        raise exc
    error = "not_found" if exc.status_code == 404 else "invalid_request"
    return JSONResponse(
        {"error": error, "error_description": str(exc.detail)},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_validation_error(_request: Request, _exc: Exception) -> Response:
        return oauth_error_response(InvalidRequest("the request parameters are malformed"))

    async def on_storage_down(request: Request, exc: Exception) -> Response:
        # The database or Redis is unreachable: a transient 503 the client may retry, not a 500.
        log.warning(
            "storage_unavailable", path=logged_path(request.scope), error=type(exc).__name__
        )
        metrics = _metrics(request)
        if metrics is not None:
            metrics.storage_error(exc)
        error = TemporarilyUnavailable("the service is briefly unavailable; retry shortly")
        response = oauth_error_response(error)
        response.headers["retry-after"] = "2"
        return response

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # Never a stack trace to the client; the log names the type, never request secrets.
        log.error("unhandled_error", path=logged_path(request.scope), error=type(exc).__name__)
        return oauth_error_response(ServerError(UNEXPECTED))

    async def on_client_gone(_request: Request, _exc: Exception) -> Response:
        # The client left mid-body, or was cut off for stalling it (TOKENWARD_BODY_TIMEOUT):
        # nobody reads an answer, and it is no error of ours. 499 in the access log, as nginx's.
        return Response(status_code=CLIENT_GONE)

    app.add_exception_handler(ClientDisconnect, on_client_gone)
    app.add_exception_handler(OAuthError, _on_oauth_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    for storage_error in STORAGE_ERRORS:
        app.add_exception_handler(storage_error, on_storage_down)
    app.add_exception_handler(Exception, on_unexpected)
