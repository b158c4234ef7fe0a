"""The checks a request passes before any token is looked at: URL, route, client address,
transport, IP rules. Each failure raises `Denied` or an RFC 6750 error, never touching a token.
"""

from __future__ import annotations

from starlette.types import Scope

from tokenward.gateway.audit import AuditRecord
from tokenward.gateway.compiled import Compiled
from tokenward.gateway.headers import Incoming
from tokenward.gateway.model import Route
from tokenward.gateway.paths import refuse
from tokenward.gateway.policy import Denied, check_ip
from tokenward.resource.asgi import authorization_header


def check_url(scope: Scope) -> None:
    query: bytes = scope["query_string"]
    # Cheap test first: only a query that could name `access_token` is parsed.
    if query and (b"%" in query or b"access_token" in query):
        authorization_header([], query.decode("latin-1"))  # raises if a token is in the URL


def admit(
    compiled: Compiled,
    scope: Scope,
    path: str,
    readings: tuple[str, ...],
    record: AuditRecord,
) -> tuple[Route, Incoming, str | None, str]:
    """(route, the request's forwardable fields, peer address, the client's scheme) for the
    resolved `path` and its `readings` (gateway/paths.py)."""
    check_url(scope)
    method: str = scope["method"]
    route = compiled.routes.match(path, method)
    record.route = route.name
    for reading in readings:
        if compiled.routes.lookup(reading, method) is not route:
            raise refuse(
                "a ';' parameter in the path: servers that strip them would route it elsewhere"
            )
    incoming = compiled.headers.upstream_headers(scope["headers"])
    client = scope.get("client")
    peer = client[0] if client else None
    record.ip = compiled.client_ip(peer, incoming.forwarded_for)
    scheme = compiled.scheme(scope, incoming, peer)
    if compiled.require_tls and scheme != "https":
        raise Denied(403, "tls_required", "this gateway accepts requests over HTTPS only")
    if route.ip.allow or route.ip.deny:
        check_ip(route.ip, record.ip)
    return route, incoming, peer, scheme
