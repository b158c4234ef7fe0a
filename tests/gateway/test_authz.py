"""The external authorization API (gateway/authz.py) as Envoy's ext_authz and Traefik's
forwardAuth call it, configured as docs/edge.md shows; nginx's is run for real in
test_edge_nginx.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.docs.blocks import ROOT, Block, blocks
from tests.gateway.conftest import GatewayFactory
from tokenward.gateway.config import ConfigError, parse_config

Mint = Callable[..., str]
ROUTES = """
trust:
  issuer: {issuer}
  audience: {audience}
trusted_proxies: [127.0.0.1/32]
authz: {authz}
routes:
  - name: admin
    prefix: /admin
    upstreams: [{upstream}]
    auth: bearer
    scopes: [admin]
  - name: items
    prefix: /items
    methods: [GET, POST]
    upstreams: [{upstream}]
    auth: bearer
    scopes: [read]
  - name: limited
    prefix: /limited
    upstreams: [{upstream}]
    auth: none
    rate_limit: {{requests: 1, per: 600, key: ip}}
"""
IDENTITY = {"x-auth-subject", "x-auth-client-id", "x-auth-scope", "x-auth-jti"}


def documented(covering: str) -> Block:
    for block in blocks(ROOT / "docs" / "edge.md"):
        if block.covered_by == f"tests/gateway/test_authz.py::{covering}":
            return block
    raise AssertionError(f"docs/edge.md has no block covered by {covering}")


def patterns(node: dict[str, Any]) -> set[str]:
    return {item["exact"].lower() for item in node["patterns"]}


def test_documented_config_loads() -> None:
    config = parse_config(documented("test_documented_config_loads").text, "edge.md")
    assert config.authz is not None
    assert (config.authz.mode, config.authz.path) == ("nginx", "/_authz")
    assert config.authz.uri_header == "x-original-uri"


def test_envoy_check_as_documented(gateway: GatewayFactory, mint: Mint) -> None:
    filters = yaml.safe_load(documented("test_envoy_check_as_documented").text)["http_filters"]
    ext_authz = filters[0]["typed_config"]
    service = ext_authz["http_service"]
    prefix = service["path_prefix"]
    sent = patterns(ext_authz["allowed_headers"])
    upstream_headers = patterns(service["authorization_response"]["allowed_upstream_headers"])
    client_headers = patterns(service["authorization_response"]["allowed_client_headers"])
    running = gateway(ROUTES.replace("{authz}", f"{{{{mode: envoy, path: {prefix}}}}}"))

    def check(method: str, path: str, **headers: str) -> Any:
        """The check Envoy makes: original method, prefix + original path and query, Host,
        and only the headers allowed_headers lets through."""
        assert set(headers) <= sent | {"host"}
        return running.http.request(method, prefix + path, headers=headers)

    token = mint(subject="alice", client_id="client-1", scopes=("read",))
    allowed = check("POST", "/items/7?x=1", authorization=f"Bearer {token}")
    assert allowed.status_code == 200, allowed.text
    returned = {name for name in allowed.headers if name.startswith("x-auth-")}
    assert returned == IDENTITY
    assert returned <= upstream_headers
    assert allowed.headers["x-auth-subject"] == "alice"
    line = running.last_audit()
    assert (line["route"], line["method"], line["decision"]) == ("items", "POST", "allow")

    refused = check("GET", "/items/7")
    assert refused.status_code == 401
    assert {"www-authenticate"} <= client_headers
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert check("DELETE", "/items/7", authorization=f"Bearer {token}").status_code == 405
    # The path after the prefix is resolved like any other: `..` cannot climb out of it.
    climbed = check("GET", "/items/../admin/x", authorization=f"Bearer {token}")
    assert climbed.status_code == 403
    assert running.last_audit()["route"] == "admin"
    assert check("GET", "/limited").status_code == 200
    limited = check("GET", "/limited")
    assert limited.status_code == 429
    assert {"retry-after", "ratelimit", "ratelimit-policy"} <= client_headers
    assert "retry-after" in limited.headers


def test_traefik_check_as_documented(gateway: GatewayFactory, mint: Mint) -> None:
    dynamic = yaml.safe_load(documented("test_traefik_check_as_documented").text)
    forward = dynamic["http"]["middlewares"]["tokenward"]["forwardAuth"]
    path = "/" + forward["address"].split("/", 3)[3]
    copied = {name.lower() for name in forward["authResponseHeaders"]}
    running = gateway(ROUTES.replace("{authz}", f"{{{{mode: traefik, path: {path}}}}}"))

    def check(method: str, uri: str, **headers: str) -> Any:
        """forwardAuth's request: GET to the address, the original in X-Forwarded-*."""
        described = {
            "x-forwarded-method": method,
            "x-forwarded-uri": uri,
            "x-forwarded-host": "api.example.com",
            "x-forwarded-proto": "https",
            "x-forwarded-for": "203.0.113.9",
        }
        return running.http.get(path, headers={**described, **headers})

    token = mint(subject="alice", scopes=("read",))
    allowed = check("GET", "/items/1?page=2", authorization=f"Bearer {token}")
    assert allowed.status_code == 200, allowed.text
    assert {name for name in allowed.headers if name.startswith("x-auth-")} == copied
    line = running.last_audit()
    assert (line["route"], line["client_ip"]) == ("items", "203.0.113.9")
    assert check("DELETE", "/items/1", authorization=f"Bearer {token}").status_code == 405
    refused = check("GET", "/admin/x", authorization=f"Bearer {token}")
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert check("GET", "/a/%2e%2e/admin").status_code == 400


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"x-original-method": "GET"}, "exactly one x-original-uri"),
        ({"x-original-uri": "/items/1"}, "exactly one x-original-method"),
        ({"x-original-method": "GET", "x-original-uri": "items/1"}, "starting with /"),
        ({"x-original-method": "G T", "x-original-uri": "/items/1"}, "not an HTTP method"),
    ],
)
def test_a_malformed_description_is_refused(
    gateway: GatewayFactory, mint: Mint, headers: dict[str, str], message: str
) -> None:
    running = gateway(ROUTES.replace("{authz}", "{{mode: nginx}}"))
    answer = running.http.get("/_authz", headers={**headers, "authorization": f"Bearer {mint()}"})
    # nginx's auth_request passes only 401 and 403: the real status rides along.
    assert answer.status_code == 403
    assert answer.headers["x-tokenward-status"] == "400"
    assert answer.json()["error"] == "invalid_request"
    assert message in answer.json()["error_description"]
    assert running.last_audit()["reason"] == "authz_malformed"


def test_repeated_uri_headers_are_refused(gateway: GatewayFactory, mint: Mint) -> None:
    running = gateway(ROUTES.replace("{authz}", "{{mode: nginx}}"))
    answer = running.http.get(
        "/_authz",
        headers=[
            ("x-original-method", "GET"),
            ("x-original-uri", "/items/1"),
            ("x-original-uri", "/admin/1"),
            ("authorization", f"Bearer {mint()}"),
        ],
    )
    assert (answer.status_code, answer.headers["x-tokenward-status"]) == (403, "400")


def test_decisions_are_not_cacheable_unless_configured(gateway: GatewayFactory, mint: Mint) -> None:
    running = gateway(ROUTES.replace("{authz}", "{{mode: traefik}}"))
    allowed = running.http.get(
        "/_authz",
        headers={
            "x-forwarded-method": "GET",
            "x-forwarded-uri": "/items/1",
            "authorization": f"Bearer {mint()}",
        },
    )
    assert allowed.status_code == 200
    assert allowed.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("authz: {mode: nginx}\n", "needs trusted_proxies"),
        ("trusted_proxies: [10.0.0.1]\nauthz: {path: /}\n", "plain path other than /"),
        ("trusted_proxies: [10.0.0.1]\nauthz: {path: /api}\n", "lies under authz.path"),
        ("trusted_proxies: [10.0.0.1]\nauthz: {mode: haproxy}\n", "must be one of"),
        ("trusted_proxies: [10.0.0.1]\nauthz: {cache_seconds: 3600}\n", "at most 300"),
        ("trusted_proxies: [10.0.0.1]\nauthz: {identity: [email]}\n", "must be some of"),
    ],
)
def test_config_refuses(text: str, message: str) -> None:
    route = "routes:\n  - {prefix: /api/x, upstreams: ['http://127.0.0.1:9'], auth: none}\n"
    with pytest.raises(ConfigError, match=message):
        parse_config(text + route)
