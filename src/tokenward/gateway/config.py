"""The gateway's one config file: YAML, validated whole at load, errors with file, line and field.

Everything is turned into frozen values here, so a loaded config is either entirely valid or
refused; a reload swaps one complete value for another (see `reload.py`). The schema is in
docs/gateway.md and examples/gateway.yaml.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from tokenward.core.ratelimits import RatePolicy
from tokenward.gateway import config_authz, config_policies, config_schema, config_traffic
from tokenward.gateway import config_sections as sections
from tokenward.gateway.model import (
    AUTH_MODES,
    DEFAULT_RATE,
    METHODS,
    NOT_YET,
    RATE_KEYS,
    TOKEN_MODES,
    GatewayConfig,
    IpNetwork,
    IpRules,
    PolicySettings,
    Route,
    Upstream,
)
from tokenward.gateway.paths import prefix_is_resolved
from tokenward.gateway.upstream_tls import TlsContexts
from tokenward.gateway.websocket_config import websocket_settings
from tokenward.gateway.weighted import MAX_WEIGHT, MIN_WEIGHT, weights_or_none
from tokenward.gateway.yamlnodes import ConfigError, Node, parse_document

__all__ = ["ConfigError", "GatewayConfig", "load_config", "parse_config"]


def load_config(path: str | Path) -> GatewayConfig:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, None, "", f"cannot read the file: {exc}") from None
    return parse_config(text, source)


def parse_config(text: str, source: str = "<config>") -> GatewayConfig:
    root = parse_document(text, source)
    top = root.mapping(
        frozenset(
            {
                "listen",
                "tls",
                "trust",
                "identity_headers",
                "auth_cookies",
                "trusted_proxies",
                "rate_limits",
                "audit",
                "metrics",
                "routes",
                "bff",
                "public_url",
                "dpop",
                "revocations",
                "monitor",
                "tracing",
                "limits",
                "policies",
                "authz",
                "workers",
            }
        )
    )
    if "routes" not in top:
        raise root.error("routes: is required (a list of at least one route)")
    policies = _rate_policies(top.get("rate_limits"))
    rate_redis, rate_prefix = _rate_backend(top.get("rate_limits"))
    base = Path(source).parent if source != "<config>" else Path.cwd()
    cedar = config_policies.settings(top.get("policies"), base)
    contexts = TlsContexts(base)
    routes = tuple(
        _route(node, policies, cedar, base, contexts) for node in top["routes"].sequence()
    )
    if not routes:
        raise top["routes"].error("needs at least one route")
    _unique_names(routes, top["routes"])
    host, port = sections.listen(top.get("listen"))
    metrics_host, metrics_port = sections.metrics(top.get("metrics"))
    trust = sections.trust(top.get("trust"))
    bff_settings = sections.bff(top.get("bff"))
    if bff_settings is None and any(route.auth == "bff" for route in routes):
        raise root.error("bff: is required when a route uses auth: bff")
    revocations = sections.revocations(top.get("revocations"))
    if revocations is not None and trust.mode == "local":
        raise top["revocations"].error("trust.mode local follows its own revocations: remove it")
    monitor = sections.monitor(top.get("monitor"), revocations)
    trusted = networks(top.get("trusted_proxies"))
    bearer = [route for route in routes if route.auth in TOKEN_MODES]
    if bearer and trust.issuer is None:
        raise root.error("trust.issuer is required when a route uses auth")
    for route, node in zip(routes, top["routes"].sequence(), strict=True):
        # No audience anywhere would admit tokens minted for any API: refuse that default.
        if route.auth in TOKEN_MODES and route.audience is None and not trust.audiences:
            raise node.error("needs audience: (or set trust.audience for every route)")
    return GatewayConfig(
        routes=routes,
        trust=trust,
        host=host,
        port=port,
        tls=sections.tls(top.get("tls")),
        identity_headers=sections.identity_headers(top.get("identity_headers")),
        auth_cookies=tuple(top["auth_cookies"].strings()) if "auth_cookies" in top else (),
        trusted_proxies=trusted,
        audit_path=sections.audit(top.get("audit")),
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        bff=bff_settings,
        public_url=sections.public_url(top.get("public_url")),
        dpop=sections.dpop(top.get("dpop")),
        revocations=revocations,
        monitor=monitor,
        rate_limit_redis_url=rate_redis,
        rate_limit_redis_prefix=rate_prefix,
        tracing=sections.tracing(top.get("tracing")),
        limits=sections.limits(top.get("limits")),
        policies=cedar,
        authz=config_authz.settings(top.get("authz"), routes, trusted),
        workers=sections.workers(
            top.get("workers"), rate_redis or (revocations.redis_url if revocations else None)
        ),
        source=source,
    )


def _unique_names(routes: tuple[Route, ...], node: Node) -> None:
    seen: set[str] = set()
    for route, item in zip(routes, node.sequence(), strict=True):
        if route.name in seen:
            raise item.error(f"route name {route.name!r} is used twice")
        seen.add(route.name)


def _rate_policies(node: Node | None) -> dict[str, RatePolicy]:
    # The documented default: 1,000 requests per hour per token (issue 4, source documents).
    policies = {DEFAULT_RATE: RatePolicy(DEFAULT_RATE, 1000, 3600.0, "token", best_effort=True)}
    if node is None:
        return policies
    for key, value in node.items():
        name = key.string()
        if name not in RATE_BACKEND:
            policies[name] = _rate_policy(value, name)
    return policies


RATE_BACKEND = ("redis_url", "redis_prefix")  # reserved names under rate_limits:


def _rate_backend(node: Node | None) -> tuple[str | None, str | None]:
    """`rate_limits.redis_url` (and `redis_prefix`): limits shared by every gateway."""
    found: dict[str, Node] = {}
    for key, value in node.items() if node is not None else ():
        if key.string() in RATE_BACKEND:
            found[key.string()] = value
    url = found["redis_url"].string() if "redis_url" in found else None
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise found["redis_url"].error("must be a redis://, rediss:// or unix:// URL")
    return url, found["redis_prefix"].string() if "redis_prefix" in found else None


def _rate_policy(node: Node, name: str) -> RatePolicy:
    fields = node.mapping(frozenset({"requests", "per", "key"}))
    if "requests" not in fields or "per" not in fields:
        raise node.error("needs requests: and per: (seconds)")
    requests = fields["requests"].integer(minimum=1)
    per = fields["per"].number(minimum=0.001)
    key = fields["key"].choice(RATE_KEYS) if "key" in fields else "token"
    return RatePolicy(name, requests, per, key)


ROUTE_FIELDS = frozenset(
    {
        "name",
        "prefix",
        "methods",
        "upstreams",
        "auth",
        "scopes",
        "scope_match",
        "audience",
        "rate_limit",
        "ip",
        "timeouts",
        "strip_prefix",
        "idempotency",
        "signed_url",
        "policies",
        "openapi",
        "traffic",
        "upstream_tls",
        "websocket",
    }
)


def _route(
    node: Node,
    policies: dict[str, RatePolicy],
    cedar: PolicySettings,
    base: Path,
    contexts: TlsContexts,
) -> Route:
    fields = node.mapping(ROUTE_FIELDS)
    for required in ("prefix", "upstreams", "auth"):
        if required not in fields:
            raise node.error(f"{required}: is required")
    prefix = fields["prefix"].string()
    if not prefix.startswith("/"):
        raise fields["prefix"].error("must start with /")
    if not prefix_is_resolved(prefix):
        # Requests are matched on resolved paths (gateway/paths.py): such a prefix never would.
        raise fields["prefix"].error(
            "must be a plain path: no '//', no '.' or '..' segment, none of ; % \\ # ? "
            "or control characters"
        )
    auth = fields["auth"].choice(AUTH_MODES)
    if auth in NOT_YET:
        raise fields["auth"].error(f"{NOT_YET[auth]}; use bearer or none")
    connect, read = _timeouts(fields.get("timeouts"))
    scopes = frozenset(fields["scopes"].strings()) if "scopes" in fields else frozenset()
    if scopes and auth not in TOKEN_MODES:
        raise fields["scopes"].error("scopes need a token: auth: bearer, dpop or bff")
    tls = fields.get("upstream_tls")
    upstreams, weights = _upstreams(fields["upstreams"], tls, contexts)

    def group_upstream(item: Node) -> tuple[Upstream, int]:
        """A `traffic.groups` entry, under the route's `upstream_tls` like its upstreams."""
        upstream, weight = _weighted_upstream(item)
        if upstream.scheme != "https":
            return upstream, weight
        return replace(upstream, tls=contexts.settings(tls)), weight

    return Route(
        name=fields["name"].string() if "name" in fields else prefix,
        prefix=prefix,
        methods=_methods(fields.get("methods")),
        upstreams=upstreams,
        auth=auth,
        scopes=scopes,
        scope_match=fields["scope_match"].choice(("all", "any"))
        if "scope_match" in fields
        else "all",
        audience=fields["audience"].string() if "audience" in fields else None,
        rate_limit=_route_rate(fields.get("rate_limit"), policies, auth),
        ip=_ip_rules(fields.get("ip")),
        connect_timeout=connect,
        read_timeout=read,
        strip_prefix=fields["strip_prefix"].boolean() if "strip_prefix" in fields else False,
        idempotency_ttl=_idempotency(fields.get("idempotency"), auth),
        signed_url=sections.signed_url(fields.get("signed_url"), auth, node),
        policies=config_policies.route_policies(fields.get("policies"), auth, node, cedar, base),
        schema=config_schema.route_schema(fields.get("openapi"), base),
        traffic=config_traffic.traffic(fields.get("traffic"), group_upstream),
        websocket=websocket_settings(fields.get("websocket")),
        line=node.line,
        weights=weights,
    )


def _upstreams(
    node: Node, tls: Node | None, contexts: TlsContexts
) -> tuple[tuple[Upstream, ...], tuple[int, ...] | None]:
    items = node.listed()
    if not items:
        raise node.error("needs at least one upstream URL")
    entries = [_weighted_upstream(item) for item in items]
    upstreams = tuple(upstream for upstream, _ in entries)
    weights = weights_or_none(tuple(weight for _, weight in entries))
    if not any(upstream.scheme == "https" for upstream in upstreams):
        if tls is not None:
            raise tls.error("applies to https:// upstreams; this route has none")
        return upstreams, weights
    settings = contexts.settings(tls)  # built once per distinct setting, at load
    return tuple(
        replace(upstream, tls=settings) if upstream.scheme == "https" else upstream
        for upstream in upstreams
    ), weights


def _weighted_upstream(node: Node) -> tuple[Upstream, int]:
    """A plain URL (weight 1), or `{url: ..., weight: N}` with N from 1 to 1000."""
    if not node.is_mapping:
        return _upstream(node), 1
    fields = node.mapping(frozenset({"url", "weight"}))
    if "url" not in fields:
        raise node.error("url: is required (the upstream's http:// or https:// URL)")
    weight = 1
    if "weight" in fields:
        weight = fields["weight"].integer()
        if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
            raise fields["weight"].error(
                f"must be an integer from {MIN_WEIGHT} to {MAX_WEIGHT} (to drain an upstream, "
                "let health checks take it out or remove it)"
            )
    return _upstream(fields["url"]), weight


def _methods(node: Node | None) -> frozenset[str] | None:
    if node is None:
        return None
    methods = frozenset(method.upper() for method in node.strings())
    unknown = methods - METHODS
    if unknown:
        raise node.error(f"unknown HTTP method(s): {', '.join(sorted(unknown))}")
    return methods


def _upstream(node: Node) -> Upstream:
    url = node.string()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise node.error("must be an http:// or https:// URL")
    if not parts.hostname or parts.query or parts.fragment or parts.username:
        raise node.error("must be http(s)://host[:port][/base-path] without query or credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise node.error("has an invalid port") from None
    return Upstream(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


def _timeouts(node: Node | None) -> tuple[float, float]:
    if node is None:
        return 5.0, 30.0
    fields = node.mapping(frozenset({"connect", "read"}))
    connect = fields["connect"].number(minimum=0.001) if "connect" in fields else 5.0
    read = fields["read"].number(minimum=0.001) if "read" in fields else 30.0
    return connect, read


def _route_rate(node: Node | None, policies: dict[str, RatePolicy], auth: str) -> RatePolicy | None:
    if node is None:
        # Token-keyed limits need a token; open routes get none unless they ask (e.g. key: ip).
        return policies[DEFAULT_RATE] if auth in TOKEN_MODES else None
    if node.is_null() or node.is_false():  # `rate_limit: off` (YAML reads off as false)
        return None
    if node.is_mapping:
        return _rate_policy(node, node.path)
    name = node.string()
    if name not in policies:
        raise node.error(f"no rate_limits policy named {name!r}")
    return policies[name]


def _ip_rules(node: Node | None) -> IpRules:
    if node is None:
        return IpRules()
    fields = node.mapping(frozenset({"allow", "deny"}))
    return IpRules(networks(fields.get("allow")), networks(fields.get("deny")))


def networks(node: Node | None) -> tuple[IpNetwork, ...]:
    if node is None:
        return ()
    networks = []
    for item in node.listed():
        try:
            networks.append(ipaddress.ip_network(item.string(), strict=False))
        except ValueError:
            raise item.error("is not an IPv4 or IPv6 address or CIDR block") from None
    return tuple(networks)


def _idempotency(node: Node | None, auth: str) -> float | None:
    if node is None or node.is_null():
        return None
    fields = node.mapping(frozenset({"ttl"}))
    if auth not in TOKEN_MODES:
        raise node.error("idempotency keys are scoped to the subject: they need auth: bearer")
    return fields["ttl"].number(minimum=1.0) if "ttl" in fields else 86400.0
