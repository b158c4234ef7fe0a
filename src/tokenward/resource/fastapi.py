"""FastAPI dependencies for bearer-protected routes (RFC 6750).

Usage::

    app = FastAPI()
    app.state.tokenward_validator = validator        # or pass validator= to require_scopes
    install_bearer_error_handler(app)                # exact RFC 6750 error bodies

    @app.get("/items")
    async def items(token: Annotated[AccessToken, Depends(require_scopes("read"))]) -> ...

Failures raise `BearerHTTPException`, a `fastapi.HTTPException`, so they work with no setup:
status and headers (WWW-Authenticate, Cache-Control: no-store) are right, but FastAPI's default
handler renders the body as `{"detail": ...}`. `install_bearer_error_handler(app)` renders the
RFC 6750 JSON body instead (`{"error": "invalid_token", ...}`); call it once per app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response

from tokenward.core.claims import AccessToken
from tokenward.core.errors import BearerError, InvalidRequest
from tokenward.guard.challenge import Challenge, challenge
from tokenward.guard.validator import Validator
from tokenward.resource.asgi import (
    STATE_KEY,
    authenticate,
    authorization_header,
    certificate_of,
    dpop_algs,
)
from tokenward.resource.policies import DENIED_DESCRIPTION, PolicyDenied, RoutePolicy

APP_STATE_KEY = "tokenward_validator"


class BearerHTTPException(HTTPException):
    """An HTTPException that still knows its RFC 6750 challenge, to be rendered verbatim."""

    def __init__(
        self, error: BearerError, realm: str = "tokenward", algs: tuple[str, ...] = ()
    ) -> None:
        self.error = error
        self.challenge: Challenge = challenge(error, realm=realm, dpop_algs=algs)
        super().__init__(
            status_code=self.challenge.status,
            detail=error.description or error.error or "unauthorized",
            headers=dict(self.challenge.headers),
        )


def _validator_for(request: Request, validator: Validator | None) -> Validator:
    if validator is not None:
        return validator
    found = getattr(request.app.state, APP_STATE_KEY, None)
    if found is None:
        raise RuntimeError(
            f"no validator: pass validator= to require_scopes or set app.state.{APP_STATE_KEY}"
        )
    if not isinstance(found, Validator):
        raise TypeError(f"app.state.{APP_STATE_KEY} is not a tokenward Validator")
    return found


def require_scopes(
    *scopes: str, validator: Validator | None = None, realm: str = "tokenward"
) -> Callable[[Request], Awaitable[AccessToken]]:
    """A dependency yielding the request's verified token, which must carry every scope given.

    The validator is `validator` if given, else `request.app.state.tokenward_validator`, looked up
    per request so an app may build its validator at startup. A missing one is a server bug, so it
    raises RuntimeError (a 500), not a 401.
    """
    required = frozenset(scopes)

    async def bearer_token(request: Request) -> AccessToken:
        checker = _validator_for(request, validator)
        try:
            query = request.scope.get("query_string", b"").decode("latin-1")
            header = authorization_header(request.headers.getlist("authorization"), query)
            proofs = request.headers.getlist("dpop")
            if len(proofs) > 1:
                raise InvalidRequest("more than one DPoP header")
            return await authenticate(
                checker,
                header,
                required,
                dpop_proof=proofs[0] if proofs else None,
                method=request.method,
                url=str(request.url),
                certificate=certificate_of(request.scope),
            )
        except BearerError as error:
            raise BearerHTTPException(error, realm, dpop_algs(checker)) from None

    return bearer_token


def require_policy(
    policy: RoutePolicy,
    *scopes: str,
    validator: Validator | None = None,
    realm: str = "tokenward",
) -> Callable[[Request], Awaitable[AccessToken]]:
    """`require_scopes`, then the Cedar policies of `policy` (docs/policies.md): a deny raises
    a 403 `HTTPException`, a step-up forbid the RFC 9470 challenge (a `BearerHTTPException`)."""
    bearer_token = require_scopes(*scopes, validator=validator, realm=realm)

    async def allowed_token(request: Request) -> AccessToken:
        token = await bearer_token(request)
        client = request.client
        try:
            policy.enforce(token, request.method, request.url.path, client.host if client else None)
        except PolicyDenied:
            raise HTTPException(403, DENIED_DESCRIPTION) from None
        except BearerError as error:
            raise BearerHTTPException(error, realm) from None
        return token

    return allowed_token


def current_token(request: Request) -> AccessToken | None:
    """The token `BearerAuthMiddleware` put on this request, or None when it did not run here."""
    token = getattr(request.state, STATE_KEY, None)
    return token if isinstance(token, AccessToken) else None


async def _render_challenge(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, BearerHTTPException):  # only registered for this class
        raise exc
    rendered = exc.challenge
    response = Response(rendered.body, status_code=rendered.status)
    for name, value in rendered.headers:  # append: Bearer and DPoP challenges may both be there
        response.headers.append(name, value)
    return response


def install_bearer_error_handler(app: FastAPI) -> None:
    """Render `BearerHTTPException` as the exact RFC 6750 response instead of `{"detail": ...}`."""
    app.add_exception_handler(BearerHTTPException, _render_challenge)
