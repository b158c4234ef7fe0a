"""A Flask view decorator for bearer-protected routes (RFC 6750). Needs `tokenward[flask]`.

Usage::

    app.extensions["tokenward"] = validator          # or pass validator= to bearer_required

    @app.get("/items")
    @bearer_required("read")
    def items():
        return {"sub": g.access_token.sub}

Flask views are synchronous, so this uses `Validator.authenticate_sync` (a remote JWKS refetch,
when one is due, is then a blocking call on that worker). Only plain (sync) views are supported.
Bearer only: a proof's single-use check is asynchronous, so the DPoP scheme is refused exactly as
the ASGI and FastAPI integrations refuse it for a validator without a DPoP verifier. Refusals are
rendered by `tokenward.guard.challenge.challenge`, as everywhere else: one shape for all three.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import Response, current_app, g, request

from tokenward.core.errors import BearerError, InvalidRequest
from tokenward.guard.challenge import challenge
from tokenward.guard.validator import DPOP_NOT_ACCEPTED, Validator
from tokenward.resource.asgi import DUPLICATE_AUTHORIZATION, authorization_header

EXTENSION_KEY = "tokenward"
P = ParamSpec("P")
R = TypeVar("R")


def _validator(explicit: Validator | None) -> Validator:
    if explicit is not None:
        return explicit
    found = current_app.extensions.get(EXTENSION_KEY)
    if found is None:
        raise RuntimeError(
            "no validator: pass validator= to bearer_required "
            f'or set app.extensions["{EXTENSION_KEY}"]'
        )
    if not isinstance(found, Validator):
        raise TypeError(f'app.extensions["{EXTENSION_KEY}"] is not a tokenward Validator')
    return found


def _header() -> str | None:
    header = authorization_header(
        request.headers.getlist("Authorization"), request.query_string.decode("latin-1")
    )
    # WSGI folds repeated headers into one comma-joined value (RFC 9110 §5.3). A comma is never
    # part of a bearer credential, so a Bearer value holding one was two headers.
    if header is not None and header[:7].lower() == "bearer " and "," in header:
        raise InvalidRequest(DUPLICATE_AUTHORIZATION)
    if header is not None and header[:5].lower() == "dpop ":
        raise InvalidRequest(DPOP_NOT_ACCEPTED)
    return header


def _refusal(error: BearerError, realm: str) -> Response:
    rendered = challenge(error, realm=realm)
    response: Response = current_app.response_class(
        rendered.body, status=rendered.status, headers=rendered.headers
    )
    return response


def bearer_required(
    *scopes: str, validator: Validator | None = None, realm: str = "tokenward"
) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
    """Let the view run only for a valid token carrying every scope; it is on `g.access_token`.

    The validator is `validator` if given, else `current_app.extensions["tokenward"]`, looked up
    per request so an app factory may set it late. A missing one raises RuntimeError (a 500).
    """
    required = frozenset(scopes)

    def decorate(view: Callable[P, R]) -> Callable[P, R | Response]:
        @functools.wraps(view)
        def protected(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            try:
                token = _validator(validator).authenticate_sync(_header(), required)
            except BearerError as error:
                return _refusal(error, realm)
            g.access_token = token
            return view(*args, **kwargs)

        return protected

    return decorate
