"""`authz:` the external authorization API for native proxies (docs/edge.md).

One section, checked whole at load: which proxy calls (its mode sets where the original
method, URI and host arrive), under which path, which identity claims go back, and whether
an allowed decision may be cached by the proxy.
"""

from __future__ import annotations

from tokenward.gateway.model import (
    AUTHZ_DEFAULTS,
    AUTHZ_MODES,
    IDENTITY_DEFAULTS,
    AuthzSettings,
    IpNetwork,
    Route,
)
from tokenward.gateway.paths import prefix_is_resolved
from tokenward.gateway.yamlnodes import Node

FIELDS = frozenset(
    {"mode", "path", "method_header", "uri_header", "host_header", "identity", "cache_seconds"}
)
MAX_CACHE_SECONDS = 300  # a cached decision outlives a revocation by this much at most


def settings(
    node: Node | None, routes: tuple[Route, ...], trusted: tuple[IpNetwork, ...]
) -> AuthzSettings | None:
    if node is None:
        return None
    fields = node.mapping(FIELDS)
    mode = fields["mode"].choice(AUTHZ_MODES) if "mode" in fields else "nginx"
    path = fields["path"].string() if "path" in fields else "/_authz"
    if not path.startswith("/") or path == "/" or not prefix_is_resolved(path):
        raise (fields.get("path") or node).error(
            "must be a plain path other than /, like /_authz (no '//', dot segments, ; % # ?)"
        )
    path = path.rstrip("/")
    for route in routes:
        if (route.prefix.rstrip("/") + "/").startswith(path + "/"):
            raise node.error(f"route {route.name!r} lies under authz.path {path}: rename one")
    if not trusted:
        # The original method and URI arrive in headers: only a proxy we trust may set them.
        raise node.error("needs trusted_proxies: the addresses of the proxies that call it")
    method, uri, host = AUTHZ_DEFAULTS[mode]
    identity = tuple(IDENTITY_DEFAULTS)
    if "identity" in fields:
        identity = tuple(fields["identity"].strings())
        unknown = set(identity) - set(IDENTITY_DEFAULTS)
        if unknown:
            raise fields["identity"].error(f"must be some of {', '.join(IDENTITY_DEFAULTS)}")
    cache = fields["cache_seconds"].integer(minimum=0) if "cache_seconds" in fields else 0
    if cache > MAX_CACHE_SECONDS:
        raise fields["cache_seconds"].error(f"at most {MAX_CACHE_SECONDS} seconds")
    return AuthzSettings(
        mode=mode,
        path=path,
        method_header=_header(fields, "method_header", method),
        uri_header=_header(fields, "uri_header", uri),
        host_header=_header(fields, "host_header", host),
        identity=identity,
        cache_seconds=cache,
    )


def _header(fields: dict[str, Node], name: str, default: str | None) -> str | None:
    node = fields.get(name)
    if node is None:
        return default
    value = node.string().lower()
    if not value.replace("-", "").isalnum():
        raise node.error("must be a header name (letters, digits and -)")
    return value
