"""The gateway's decision served to a native proxy: nginx `auth_request`, Envoy `ext_authz`
(HTTP service) and Traefik `forwardAuth` (docs/edge.md).

The proxy holds the client's request and asks, under `authz.path`, whether it may pass. The
original method, URI and host arrive in headers the proxy sets (nginx, Traefik) or as the
check request's own method, path after the prefix, and Host (Envoy). They are rebuilt into the
scope the gateway would have seen as the proxy itself, and that scope goes through the very
same decision (`Gateway._decide`: path resolution, route, address, token, binding, scopes,
policies, rate limit), on exactly the bytes the client sent: the raw request URI, never a
proxy's decoded copy; the client's TLS certificate, for certificate-bound tokens, only from
the header the trusted proxy sets. Only the answer differs: 200 with the identity headers to
forward, or the refusal, reshaped where the proxy cannot pass a status through (nginx knows 401
and 403).
"""

from __future__ import annotations

from starlette.types import Scope

from tokenward.core.claims import AccessToken
from tokenward.gateway.compiled import Compiled
from tokenward.gateway.headers import Incoming
from tokenward.gateway.model import AuthzSettings, Route
from tokenward.gateway.paths import resolve_scope
from tokenward.gateway.policy import Denied
from tokenward.gateway.render import Answer
from tokenward.serving.tls import proxied_certificate_only

Headers = list[tuple[bytes, bytes]]
STATUS_HEADER = b"x-tokenward-status"  # the refusal's real status, where nginx needs 403
NO_STORE = (b"cache-control", b"no-store")
# A cached decision must never serve another credential: whatever the proxy's cache key says,
# the answer varies on every header that carries one.
VARY = (b"vary", b"authorization, dpop, cookie")
_TOKEN_CHARS = frozenset(  # RFC 9110 §5.6.2 tchar: what a method is made of
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


class Decision:
    """What `Gateway._decide` admitted: the route, the scope to forward, the verified token,
    the headers to add upstream (`added`) and to the answer (`extra`), and where it came from."""

    __slots__ = ("added", "extra", "incoming", "peer", "route", "scheme", "scope", "token")

    def __init__(
        self,
        route: Route,
        scope: Scope,
        token: AccessToken | None,
        added: Headers,
        extra: Headers,
        incoming: Incoming,
        peer: str | None,
        scheme: str,
    ) -> None:
        self.route = route
        self.scope = scope
        self.token = token
        self.added = added
        self.extra = extra
        self.incoming = incoming
        self.peer = peer
        self.scheme = scheme


def resolved(scope: Scope) -> tuple[Scope, str, tuple[str, ...]]:
    """The scope carrying its resolved path (gateway/paths.py), that path, and its readings:
    whatever reads the scope from here on (signed links, DPoP's htu, the upstream target,
    idempotency) sees what is routed on."""
    path, target, readings = resolve_scope(scope)
    if path != scope.get("path") or target != scope.get("raw_path"):
        scope = {**scope, "path": path, "raw_path": target}
    return scope, path, readings


def is_authz_request(scope: Scope, authz: AuthzSettings) -> bool:
    """Is this request addressed to `authz.path` (exactly, or below it for Envoy's prefix)?
    Compared on the raw bytes, before any resolution: `/_authz/../x` is under the prefix."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):
        raw = str(scope["path"]).encode("latin-1", "replace")
    prefix = authz.path.encode("ascii")
    return raw.startswith(prefix) and raw[len(prefix) : len(prefix) + 1] in (b"", b"/", b"?")


def original_request(authz: AuthzSettings, compiled: Compiled, scope: Scope) -> Scope:
    """The client's request as the proxy describes it; Denied (400) if the description is
    missing, repeated or malformed: no decision is made on a guess. Only a peer in
    `trusted_proxies` may describe one (403): the description is believed."""
    client = scope.get("client")
    if not compiled.peer_trusted(client[0] if client else None):
        raise Denied(403, "authz_untrusted", "only a trusted proxy may ask for decisions")
    method_name, uri_name, host_name = compiled.authz_headers
    methods: list[bytes] = []
    uris: list[bytes] = []
    hosts: list[bytes] = []
    kept: Headers = []
    for name, value in scope["headers"]:  # one pass: this runs on every check
        if name == method_name:
            methods.append(value)
        elif name == uri_name:
            uris.append(value)
        elif name == host_name:
            hosts.append(value)
        elif name != b"host" or host_name is None:
            kept.append((name, value))
    method = _method(methods, method_name) if method_name is not None else scope["method"]
    if uri_name is not None:
        raw_path, _, query = _one(uris, uri_name).partition(b"?")
    else:
        raw: bytes = scope.get("raw_path") or str(scope["path"]).encode("latin-1")
        raw_path, _, query = raw[len(authz.path) :].partition(b"?")
        raw_path = raw_path or b"/"
        query = query or scope.get("query_string", b"")
    if not raw_path.startswith(b"/"):
        raise _malformed("the original URI must be a path starting with /")
    if host_name is not None:
        kept.extend(_host(hosts, host_name, scope["headers"]))
    return {
        **scope,
        "method": method,
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": query,
        "headers": kept,
        # The client's certificate (RFC 8705 binding) only as the proxy's header describes it
        # (`tls.client_cert_header`): this connection's own certificate is the proxy's.
        "extensions": proxied_certificate_only(scope),
    }


def _method(values: list[bytes], name: bytes) -> str:
    raw = _one(values, name)
    if not raw or not _TOKEN_CHARS.issuperset(raw):
        raise _malformed(f"{name.decode()} is not an HTTP method")
    return raw.decode("ascii").upper()


def _host(values: list[bytes], name: bytes, headers: Headers) -> Headers:
    """The Host to decide with: the described one, or the proxy's own if it gave none."""
    if len(values) > 1:
        raise _malformed(f"{name.decode()} is repeated")
    if values:
        return [(b"host", values[0])]
    return [(field, value) for field, value in headers if field == b"host"]


def _one(values: list[bytes], name: bytes) -> bytes:
    if len(values) != 1:
        raise _malformed(f"the proxy must send exactly one {name.decode()} header")
    return values[0]


def _malformed(message: str) -> Denied:
    return Denied(400, "authz_malformed", message, error="invalid_request")


def for_proxy(authz: AuthzSettings, answer: Answer) -> Answer:
    """A refusal as the proxy can pass it on. nginx's auth_request turns any status but 2xx,
    401 and 403 into a 500: other 4xx become 403 with the real one in X-Tokenward-Status
    (the documented config restores it). 5xx stay: the proxy fails closed on them."""
    status, headers, body = answer
    if authz.mode == "nginx" and 400 <= status < 500 and status not in (401, 403):
        return 403, [*headers, (STATUS_HEADER, str(status).encode("ascii"))], body
    return answer


def allowed(authz: AuthzSettings, compiled: Compiled, decision: Decision, now: float) -> Answer:
    """200 with the identity headers to forward and the rate-limit state for the client."""
    names = compiled.authz_identity
    headers = [(name, value) for name, value in decision.added if name in names]
    headers.extend(decision.extra)
    max_age = _max_age(authz, decision, now)
    if max_age > 0:
        headers.append((b"cache-control", b"max-age=%d" % max_age))
        headers.append(VARY)
    else:
        headers.append(NO_STORE)
    headers.append((b"content-length", b"0"))
    return 200, headers, b""


def _max_age(authz: AuthzSettings, decision: Decision, now: float) -> int:
    """How long the proxy may reuse this allow: only with `cache_seconds`, only on bearer
    routes whose decision depends on nothing but the token and the request line (no Cedar
    policies, no IP rules; a DPoP proof is single-use; a certificate-bound token also depends
    on the certificate, which is not in the proxy's cache key), and never past the token's
    expiry."""
    token, route = decision.token, decision.route
    if authz.cache_seconds <= 0 or token is None or route.auth != "bearer":
        return 0
    if token.x5t_s256 is not None:
        return 0
    if route.policies is not None or route.ip.allow or route.ip.deny:
        return 0
    return max(0, min(authz.cache_seconds, int(token.exp - now)))
