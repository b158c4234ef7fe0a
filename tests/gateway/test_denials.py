"""Every reason the gateway refuses a request: status, body, challenge, audit; no upstream call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tests.gateway.conftest import GatewayFactory
from tests.gateway.upstream_app import Upstream
from tests.resource.conftest import assert_no_leak, tamper
from tokenward.core.records import Revocation, RevocationKind
from tokenward.guard import Validator
from tokenward.resource.asgi import TOKEN_IN_URL
from tokenward.store.memory import MemoryRevocationStore

ORDERS = "https://orders.example"
CONFIG = """
trust: {{issuer: {issuer}, audience: {audience}}}
rate_limits:
  tight: {{requests: 2, per: 60, key: subject}}
routes:
  - {{name: items, prefix: /items, upstreams: [{upstream}], auth: bearer, scopes: [read]}}
  - {{name: any, prefix: /any, upstreams: [{upstream}], auth: bearer, scopes: [a, b],
      scope_match: any}}
  - {{name: orders, prefix: /orders, upstreams: [{upstream}], auth: bearer, audience: ORDERS}}
  - {{name: limited, prefix: /limited, upstreams: [{upstream}], auth: bearer, rate_limit: tight}}
  - {{name: lan, prefix: /lan, upstreams: [{upstream}], auth: none,
      ip: {{allow: [10.0.0.0/8, "2001:db8::/32"]}}}}
  - {{name: blocked, prefix: /blocked, upstreams: [{upstream}], auth: none,
      ip: {{deny: [127.0.0.0/8]}}}}
""".replace("ORDERS", ORDERS)


@dataclass
class Case:
    path: str
    headers: list[tuple[str, str]]
    status: int
    reason: str
    error: str
    description: str | None = None
    secrets: list[str] = field(default_factory=list)


Mint = Callable[..., str]


def _bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _missing(mint: Mint, clock: FrozenClock, store: MemoryRevocationStore) -> Case:
    return Case("/items", [], 401, "missing_token", "unauthorized", "no bearer token")


def _malformed(mint: Mint, clock: FrozenClock, store: MemoryRevocationStore) -> Case:
    return Case("/items", [("authorization", "Bearer")], 400, "malformed", "invalid_request")


def _garbage(mint: Mint, clock: FrozenClock, store: MemoryRevocationStore) -> Case:
    return Case("/items", _bearer("not-a-token"), 401, "malformed", "invalid_token")


def _tampered(mint: Mint, clock: FrozenClock, store: MemoryRevocationStore) -> Case:
    bad = tamper(mint())
    return Case("/items", _bearer(bad), 401, "invalid_token", "invalid_token", secrets=[bad])


def _expired(mint: Mint, clock: FrozenClock, store: MemoryRevocationStore) -> Case:
    token = mint()
    clock.advance(900 + 31)
    return Case(
        "/items",
        _bearer(token),
        401,
        "expired",
        "invalid_token",
        "the access token expired",
        [token],
    )


def _revoked(mint: Mint, clock: FrozenClock, store: MemoryRevocationStore) -> Case:
    token = mint(subject="bob")
    revocation = Revocation(RevocationKind.SUBJECT, "bob", clock() + 1, clock() + 3600)
    import asyncio

    asyncio.run(store.revoke(revocation))
    return Case("/items", _bearer(token), 401, "revoked", "invalid_token", secrets=[token])


def _foreign_audience(mint: Mint, clock: FrozenClock, store: MemoryRevocationStore) -> Case:
    token = mint(audience=("https://other.example",))
    return Case(
        "/items",
        _bearer(token),
        401,
        "wrong_audience",
        "invalid_token",
        "the access token is not for this audience",
        [token],
    )


def _route_audience(mint: Mint, clock: FrozenClock, store: MemoryRevocationStore) -> Case:
    token = mint()  # valid for AUDIENCE, which the validator accepts, but not for /orders
    return Case(
        "/orders",
        _bearer(token),
        401,
        "wrong_audience",
        "invalid_token",
        "the access token is not for this audience",
        [token],
    )


def _scope_all(mint: Mint, clock: FrozenClock, store: MemoryRevocationStore) -> Case:
    token = mint(scopes=("write",))
    return Case(
        "/items", _bearer(token), 403, "insufficient_scope", "insufficient_scope", secrets=[token]
    )


def _scope_any(mint: Mint, clock: FrozenClock, store: MemoryRevocationStore) -> Case:
    token = mint(scopes=("c",))
    return Case("/any", _bearer(token), 403, "insufficient_scope", "insufficient_scope")


def _ip_not_allowed(mint: Mint, clock: FrozenClock, store: MemoryRevocationStore) -> Case:
    return Case("/lan", [], 403, "ip_denied", "ip_denied")


def _ip_denied(mint: Mint, clock: FrozenClock, store: MemoryRevocationStore) -> Case:
    return Case("/blocked", [], 403, "ip_denied", "ip_denied")


def _token_in_query(mint: Mint, clock: FrozenClock, store: MemoryRevocationStore) -> Case:
    token = mint()
    return Case(
        f"/items?access_token={token}",
        _bearer(token),
        400,
        "token_in_query",
        "invalid_request",
        TOKEN_IN_URL,
        [token],
    )


def _token_in_query_encoded(mint: Mint, clock: FrozenClock, store: MemoryRevocationStore) -> Case:
    token = mint()
    return Case(
        f"/open?x=1&%61ccess_token={token}",
        [],
        400,
        "token_in_query",
        "invalid_request",
        TOKEN_IN_URL,
        [token],
    )


def _two_headers(mint: Mint, clock: FrozenClock, store: MemoryRevocationStore) -> Case:
    one, two = mint(), mint()
    return Case(
        "/items",
        [*_bearer(one), *_bearer(two)],
        400,
        "malformed",
        "invalid_request",
        "more than one Authorization header",
        [one, two],
    )


CASES = {
    name.removeprefix("_"): case
    for name, case in list(globals().items())
    if name.startswith("_")
    and callable(case)
    and name not in ("_bearer",)
    and case.__module__ == __name__
}


@pytest.fixture
def wide_validator(validator: Validator) -> Validator:
    """Accepts both audiences, so the route's own audience check is the one that refuses."""
    return Validator(
        issuer=ISSUER,
        audience=(AUDIENCE, ORDERS),
        keys=validator.keys,
        revocations=validator.revocations,
        clock=validator._clock,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_refusal(
    name: str,
    gateway: GatewayFactory,
    wide_validator: Validator,
    upstream: Upstream,
    mint: Mint,
    clock: FrozenClock,
    revocations: MemoryRevocationStore,
) -> None:
    running = gateway(CONFIG, validator=wide_validator)
    case = CASES[name](mint, clock, revocations)
    before = upstream.requests
    response = running.http.get(case.path, headers=case.headers)
    assert upstream.requests == before, "a refused request must never reach the upstream"
    assert response.status_code == case.status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == case.error
    if case.description is not None:
        assert body["error_description"] == case.description
    if case.status == 401:
        assert response.headers["www-authenticate"].startswith('Bearer realm="tokenward-gateway"')
    audit = running.last_audit()
    assert (audit["decision"], audit["reason"], audit["status"]) == (
        "deny",
        case.reason,
        case.status,
    )
    assert_no_leak(list(response.headers.items()), response.content, case.secrets)
    assert_no_leak([], running.audit.getvalue(), case.secrets)


def test_rate_limit_answers_429_with_headers_and_recovers(
    gateway: GatewayFactory, mint: Mint, clock: FrozenClock, upstream: Upstream
) -> None:
    running = gateway(CONFIG)
    token = mint(subject="carol")
    headers = _bearer(token)
    first = running.http.get("/limited", headers=headers)
    assert first.status_code == 200
    assert first.headers["ratelimit-policy"] == '"tight";q=2;w=60'
    assert first.headers["ratelimit"] == '"tight";r=1;t=30'
    assert running.http.get("/limited", headers=headers).status_code == 200
    before = upstream.requests
    refused = running.http.get("/limited", headers=_bearer(mint(subject="carol")))
    assert upstream.requests == before
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "30"
    assert refused.headers["ratelimit"] == '"tight";r=0;t=60'
    assert refused.json()["error"] == "rate_limited"
    assert running.last_audit()["reason"] == "rate_limited"
    # Keyed by subject: another user is unaffected; time brings carol's quota back.
    assert running.http.get("/limited", headers=_bearer(mint(subject="dan"))).status_code == 200
    clock.advance(30)
    assert running.http.get("/limited", headers=headers).status_code == 200


def test_default_policy_is_1000_per_hour_per_token(gateway: GatewayFactory, mint: Mint) -> None:
    running = gateway(CONFIG)
    response = running.http.get("/items", headers=_bearer(mint()))
    assert response.headers["ratelimit-policy"] == '"default";q=1000;w=3600'
    assert response.headers["ratelimit"] == '"default";r=999;t=4'


def test_trusted_proxy_forwarded_for_decides_the_client(gateway: GatewayFactory) -> None:
    running = gateway(CONFIG.replace("routes:", "trusted_proxies: [127.0.0.1/32]\nroutes:", 1))
    response = running.http.get("/lan", headers={"x-forwarded-for": "203.0.113.9, 10.1.2.3"})
    assert response.status_code == 200
    assert response.json()["headers"]["x-forwarded-for"] == ["203.0.113.9, 10.1.2.3, 127.0.0.1"]
    assert running.last_audit()["client_ip"] == "10.1.2.3"
    outside = running.http.get("/lan", headers={"x-forwarded-for": "203.0.113.9"})
    assert outside.status_code == 403
    assert running.last_audit()["client_ip"] == "203.0.113.9"
