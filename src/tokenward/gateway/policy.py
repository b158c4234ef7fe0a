"""Per-route policy: which route a request is for, who the client is, and what it may do.

Each check raises `Denied` with a fixed reason code (audit, metrics) and a message for the
client; nothing here sees or echoes the token.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenward.core.claims import AccessToken
from tokenward.core.errors import (
    BearerError,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    MissingToken,
)
from tokenward.core.proxies import in_networks, parse_ip
from tokenward.gateway.model import IpRules, Route
from tokenward.resource.asgi import TOKEN_IN_URL

WRONG_AUDIENCE = "the access token is not for this audience"


class Denied(Exception):
    """A refusal rendered by the gateway itself (not an RFC 6750 bearer challenge)."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        headers: Iterable[tuple[bytes, bytes]] = (),
        *,
        error: str | None = None,
        details: dict[str, str] | None = None,
    ) -> None:
        """`error` is the JSON body's `error` when it differs from the audit `reason`;
        `details`: more members of the body (a schema failure's `pointer`)."""
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.error = error or reason
        self.message = message
        self.headers = list(headers)
        self.details = details or {}


class RouteTable:
    """First match wins in file order, except that longer prefixes are tried first, so a
    specific route (`/api/admin`) is never shadowed by a general one (`/api`)."""

    def __init__(self, routes: Iterable[Route]) -> None:
        ordered = list(routes)
        self._routes = sorted(ordered, key=lambda route: -len(route.prefix))

    def match(self, path: str, method: str) -> Route:
        path_matched = False
        for route in self._routes:
            if route.matches(path):
                if route.methods is None or method in route.methods:
                    return route
                path_matched = True
        if path_matched:
            raise Denied(405, "method_not_allowed", "this method is not allowed on this route")
        raise Denied(404, "no_route", "no route matches this path")

    def lookup(self, path: str, method: str) -> Route | None:
        """The route `match` would pick, or None where it would refuse."""
        for route in self._routes:
            if route.matches(path) and (route.methods is None or method in route.methods):
                return route
        return None


def check_ip(rules: IpRules, client: str) -> None:
    address = parse_ip(client)
    if address is None:
        raise Denied(403, "ip_denied", "requests from this address are not allowed")
    if rules.deny and in_networks(address, rules.deny):
        raise Denied(403, "ip_denied", "requests from this address are not allowed")
    if rules.allow and not in_networks(address, rules.allow):
        raise Denied(403, "ip_denied", "requests from this address are not allowed")


def check_token(route: Route, token: AccessToken) -> None:
    """Audience and scopes for this route (the validator did signature, time, issuer)."""
    if route.audience is not None and route.audience not in token.aud:
        raise InvalidToken(WRONG_AUDIENCE)
    if not route.scopes:
        return
    if route.scope_match == "all":
        ok = route.scopes <= token.scopes
    else:
        ok = not route.scopes.isdisjoint(token.scopes)
    if not ok:
        raise InsufficientScope(
            "the access token lacks a required scope", scope=" ".join(sorted(route.scopes))
        )


_REASONS = (
    ("expired", "expired"),
    ("revoked", "revoked"),
    ("session ended", "revoked"),
    ("audience", "wrong_audience"),
    ("malformed", "malformed"),
)


def bearer_reason(error: BearerError) -> str:
    """A fixed reason code for audit and metrics, from the error's class and fixed phrase."""
    reason = error.error or "unauthorized"
    if isinstance(error, MissingToken):
        reason = "missing_token"
    elif isinstance(error, InsufficientScope):
        reason = "insufficient_scope"
    elif isinstance(error, InvalidRequest):
        reason = "token_in_query" if error.description == TOKEN_IN_URL else "malformed"
    elif isinstance(error, InvalidToken):
        found = (code for phrase, code in _REASONS if phrase in error.description)
        reason = next(found, "invalid_token")
    return reason
