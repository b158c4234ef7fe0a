"""Pure-ASGI bearer authentication for a user's own API (RFC 6750), under any ASGI framework.

A plain ASGI callable rather than Starlette's BaseHTTPMiddleware: it renders its own challenge
(exception handlers sit inside the middleware stack, so they could not), it does not wrap the
response stream, and a cache hit costs no await. Put CORS middleware *outside* this one, so
preflight requests (which carry no credentials) are answered before authentication.

The request-level checks shared by every integration (one Authorization header, no token in the
URL, cache first) live here too, so FastAPI and Flask refuse exactly what this refuses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from tokenward.core.claims import AccessToken
from tokenward.core.errors import BearerError, InvalidRequest
from tokenward.guard.challenge import challenge
from tokenward.guard.validator import Validator
from tokenward.resource.policies import DENIED_BODY, PolicyDenied, RoutePolicy
from tokenward.serving.tls import peer_certificate

if TYPE_CHECKING:  # only type aliases: importing this module needs no Starlette at run time
    from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_IN_URL = "access tokens in the URL are not accepted; send an Authorization header"
DUPLICATE_AUTHORIZATION = "more than one Authorization header"
POLICY_VIOLATION = 1008  # RFC 6455 §7.4.1: the close code for a refused handshake
STATE_KEY = "access_token"


def _has_token_parameter(query_string: str) -> bool:
    # parse_qsl percent-decodes names, so `access%5Ftoken=` is caught as well.
    pairs = parse_qsl(query_string, keep_blank_values=True, errors="replace")
    return any(name == "access_token" for name, _ in pairs)


def authorization_header(values: Sequence[str], query_string: str) -> str | None:
    """The single Authorization header value, or None; raises InvalidRequest for ambiguity.

    RFC 6750 §2: a client must use one method only. A token in the URL (§2.3) is refused even
    beside a good header: it leaks into logs, history and Referer, so the caller must learn of it.
    """
    if query_string and _has_token_parameter(query_string):
        raise InvalidRequest(TOKEN_IN_URL)
    if len(values) > 1:
        raise InvalidRequest(DUPLICATE_AUTHORIZATION)
    return values[0] if values else None


async def authenticate(
    validator: Validator,
    header: str | None,
    required: frozenset[str],
    *,
    dpop_proof: str | None = None,
    method: str = "GET",
    url: str = "",
    certificate: str | None = None,
) -> AccessToken:
    """The validator's cache first, so a hit with enough scope never awaits.
    `certificate`: the request's client certificate thumbprint (`certificate_of`), which a
    certificate-bound token (RFC 8705) needs; the plain cache never holds such a token.

    A hit lacking a scope falls through to `Validator.authenticate`, which raises the canonical
    InsufficientScope; that path is rare, so the second cache lookup does not matter. The DPoP
    scheme always goes to the validator: every request needs its own proof checked.
    """
    if header is not None and header[:5].lower() == "dpop ":
        return await validator.authenticate_request(
            header, required, dpop_proof=dpop_proof, method=method, url=url, certificate=certificate
        )
    token = validator.cached(header) if header is not None else None
    if token is None and certificate is not None:  # a bound token's hit: still no await
        token = validator.cached_bound(header, certificate)
    if token is None or not required <= token.scopes:
        token = await validator.authenticate(header, required, certificate=certificate)
    return token


def certificate_of(scope: Scope) -> str | None:
    """The x5t#S256 of the request's TLS client certificate (ASGI TLS extension, filled by
    tokenward's server or `ProxyCertificateMiddleware`), or None."""
    cert = peer_certificate(scope)
    return cert.x5t_s256 if cert is not None else None


def dpop_algs(validator: Validator) -> tuple[str, ...]:
    return validator.dpop.algorithms if validator.dpop is not None else ()


async def send_challenge(
    send: Send, error: BearerError, realm: str, algs: tuple[str, ...] = ()
) -> None:
    rendered = challenge(error, realm=realm, dpop_algs=algs)
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in rendered.headers
    ]
    headers.append((b"content-length", str(len(rendered.body)).encode("ascii")))
    await send({"type": "http.response.start", "status": rendered.status, "headers": headers})
    await send({"type": "http.response.body", "body": rendered.body})


class BearerAuthMiddleware:
    """Authenticate every http and websocket request; the token lands in `scope["state"]`.

    Starlette and FastAPI expose it as `request.state.access_token` (see
    `tokenward.resource.fastapi.current_token`). `exempt_paths` are exact `scope["path"]` values
    (health checks, metadata) that pass through unauthenticated. Lifespan and any other scope
    types pass through untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        validator: Validator,
        *,
        required_scopes: Iterable[str] = (),
        realm: str = "tokenward",
        exempt_paths: Iterable[str] = (),
        public_url: str | None = None,
        policy: RoutePolicy | None = None,
    ) -> None:
        """`policy`: Cedar policies every authenticated request must also pass
        (tokenward.resource.policies, docs/policies.md)."""
        self.app = app
        self.policy = policy
        self.validator = validator
        self.required_scopes = frozenset(required_scopes)
        self.realm = realm
        self.exempt_paths = frozenset(exempt_paths)
        # DPoP proofs name the URL they are for (htu). Behind a proxy, or to keep a proof made
        # for another host from being accepted here, set the public base URL explicitly.
        self.public_url = public_url.rstrip("/") if public_url else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        try:
            token = await self._authenticate(scope)
            if self.policy is not None:
                client = scope.get("client")
                self.policy.enforce(
                    token, scope.get("method", "GET"), scope["path"], client[0] if client else None
                )
        except PolicyDenied:
            await self._deny(scope, receive, send)
            return
        except BearerError as error:
            if kind == "http":
                await send_challenge(send, error, self.realm, dpop_algs(self.validator))
            else:
                await self._refuse_websocket(receive, send, error)
            return
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state[STATE_KEY] = token
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope) -> AccessToken:
        values = [
            value.decode("latin-1") for name, value in scope["headers"] if name == b"authorization"
        ]
        query = scope.get("query_string", b"").decode("latin-1")
        header = authorization_header(values, query)
        certificate = certificate_of(scope)
        if header is None or header[:5].lower() != "dpop ":
            return await authenticate(
                self.validator, header, self.required_scopes, certificate=certificate
            )
        proofs = [value.decode("latin-1") for name, value in scope["headers"] if name == b"dpop"]
        if len(proofs) > 1:
            raise InvalidRequest("more than one DPoP header")
        return await authenticate(
            self.validator,
            header,
            self.required_scopes,
            dpop_proof=proofs[0] if proofs else None,
            method=scope.get("method", "GET"),
            url=self._url(scope),
            certificate=certificate,
        )

    def _url(self, scope: Scope) -> str:
        path = str(scope.get("root_path", "")) + str(scope["path"])
        if self.public_url is not None:
            return self.public_url + path
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        if host is None and scope.get("server"):
            host = "{}:{}".format(*scope["server"])
        scheme = {"ws": "http", "wss": "https"}.get(
            scope.get("scheme", "http"), scope.get("scheme", "http")
        )
        return f"{scheme}://{host or 'localhost'}{path}"

    async def _deny(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if (await receive())["type"] == "websocket.connect":
                close = {"type": "websocket.close", "code": POLICY_VIOLATION}
                await send({**close, "reason": "access_denied"})
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", b"no-store"),
            (b"content-length", str(len(DENIED_BODY)).encode("ascii")),
        ]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": DENIED_BODY})

    @staticmethod
    async def _refuse_websocket(receive: Receive, send: Send, error: BearerError) -> None:
        # Take the handshake's connect event first, as the ASGI websocket protocol orders it; a
        # close before accept makes the server answer the upgrade with 403 and no socket opens.
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client went away before we could refuse it
        reason = error.error or "unauthorized"  # a fixed code: never token material
        await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": reason})
