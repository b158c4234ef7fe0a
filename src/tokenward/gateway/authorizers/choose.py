"""Which authorizer each route gets, decided once per load: the only place that asks whether
the gateway was given a validator, a DPoP verifier, an introspection client or a BFF."""

from __future__ import annotations

from collections.abc import Callable

from tokenward.gateway.authorizers.base import RouteAuthorizer
from tokenward.gateway.authorizers.bearer import Bearer
from tokenward.gateway.authorizers.dpop import Dpop
from tokenward.gateway.authorizers.passthrough import PassThrough
from tokenward.gateway.authorizers.session import BffSession
from tokenward.gateway.authorizers.signed import SignedLinks
from tokenward.gateway.authorizers.tokens import IntrospectedTokens, Tokens
from tokenward.gateway.bff import Bff
from tokenward.gateway.compiled import Compiled
from tokenward.gateway.metrics import GatewayMetrics
from tokenward.gateway.model import TOKEN_MODES, Route
from tokenward.guard.introspection_client import IntrospectionResolver
from tokenward.guard.validator import Validator

NO_DPOP_VERIFIER = (
    "routes with auth: dpop need a validator with a DPoP verifier "
    "(tokenward.gateway.trust.build_validator makes one)"
)


def route_authorizers(
    compiled: Compiled,
    validator: Validator | None,
    *,
    metrics: GatewayMetrics,
    introspection: IntrospectionResolver | None,
    bff: Bff | None,
    clock: Callable[[], float],
) -> dict[str, RouteAuthorizer]:
    """Route name -> its authorizer. ValueError if a route's mode lacks what it needs."""
    routes = compiled.config.routes
    if validator is None:
        if any(route.auth in TOKEN_MODES for route in routes):
            raise ValueError("routes with auth: bearer need a validator")
        return {route.name: _untokened(compiled, route, clock) for route in routes}
    tokens = (
        Tokens(validator, metrics)
        if introspection is None
        else IntrospectedTokens(validator, metrics, introspection)
    )
    return {route.name: _chosen(compiled, route, validator, tokens, bff, clock) for route in routes}


def _chosen(
    compiled: Compiled,
    route: Route,
    validator: Validator,
    tokens: Tokens,
    bff: Bff | None,
    clock: Callable[[], float],
) -> RouteAuthorizer:
    auth = route.auth
    if auth == "bearer":
        return Bearer(route, tokens, compiled.identity)
    if auth == "dpop":
        if validator.dpop is None:
            raise ValueError(NO_DPOP_VERIFIER)
        return Dpop(route, validator, validator.dpop.algorithms, compiled.htu, compiled.identity)
    if auth == "bff":
        if bff is None:
            raise ValueError("a config with bff: needs a Bff (tokenward.gateway.bff)")
        return BffSession(route, tokens, bff, compiled.identity)
    return _untokened(compiled, route, clock)


def _untokened(compiled: Compiled, route: Route, clock: Callable[[], float]) -> RouteAuthorizer:
    """The modes that need no validator."""
    if route.auth == "none":
        return PassThrough()
    if route.auth == "signed_url":
        check = compiled.signatures.get(route.name)
        if check is None:
            raise ValueError(f"route {route.name}: auth: signed_url needs signed_url: keys")
        return SignedLinks(check, compiled.config.identity_headers, clock)
    raise ValueError(f"route {route.name}: unknown auth mode {route.auth!r}")
