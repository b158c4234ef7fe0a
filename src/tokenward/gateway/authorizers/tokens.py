"""A bearer value checked for a route: the validator's cache first (hits and misses counted),
then the validator, then the route's audience and scopes. Shared by `bearer` and `bff` routes."""

from __future__ import annotations

from collections.abc import Callable

from tokenward.core.claims import AccessToken
from tokenward.gateway.metrics import GatewayMetrics
from tokenward.gateway.model import Route
from tokenward.gateway.policy import check_token
from tokenward.guard.introspection_client import IntrospectionResolver
from tokenward.guard.validator import Validator


class Tokens:
    """Tokens the validator checks on its own: JWTs on the issuer's keys, or opaque tokens
    resolved by the validator's resolver without a freshness bound of the gateway's."""

    __slots__ = ("_cached", "_metrics", "_validator")

    def __init__(self, validator: Validator, metrics: GatewayMetrics) -> None:
        self._validator = validator
        self._metrics = metrics
        # A bound method: the cache lookup is the hot path, so no frame of ours around it.
        self._cached: Callable[[str], AccessToken | None] = validator.cached

    async def authenticate(
        self, route: Route, header: str | None, certificate: str | None = None
    ) -> AccessToken:
        token = await self.verify(header, certificate)
        check_token(route, token)
        return token

    async def verify(self, header: str | None, certificate: str | None = None) -> AccessToken:
        """The verified token, before the route's audience and scopes are checked.
        `certificate`: the x5t#S256 of the request's TLS client certificate, which a
        certificate-bound token (RFC 8705) needs; such tokens are never in the plain cache."""
        token = self._cached(header) if header is not None else None
        if token is None and certificate is not None:
            token = self._validator.cached_bound(header, certificate)
        if token is None:
            self._metrics.cache_miss.inc()
            token = await self._validator.authenticate(header, certificate=certificate)
        else:
            self._metrics.cache_hit.inc()
        return token


class IntrospectedTokens(Tokens):
    """With an introspection client (`trust.introspection`): an opaque token's cache entry holds
    only while its introspection answer is fresh (`max_ttl`); past that it is dropped, so the
    issuer is asked again."""

    __slots__ = ("_introspection",)

    def __init__(
        self, validator: Validator, metrics: GatewayMetrics, introspection: IntrospectionResolver
    ) -> None:
        super().__init__(validator, metrics)
        self._introspection = introspection
        self._cached = self._fresh_cached

    def _fresh_cached(self, header: str) -> AccessToken | None:
        if "." not in header and not self._introspection.fresh(header[len("Bearer ") :]):
            self._validator.cache.discard(header)
        return self._validator.cached(header)
