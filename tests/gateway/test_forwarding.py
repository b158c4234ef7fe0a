"""What reaches the upstream and what comes back: identity in, credentials and spoofs out."""

from __future__ import annotations

from collections.abc import Callable

from tests.gateway.conftest import GatewayFactory, serve
from tests.gateway.upstream_app import Upstream

Mint = Callable[..., str]


def test_admitted_request_carries_verified_identity_and_no_credentials(
    gateway: GatewayFactory, mint: Callable[..., str]
) -> None:
    running = gateway(BASE_WITH_COOKIES)
    token = mint(subject="alice", client_id="client-1", scopes=("read", "write"))
    response = running.http.get(
        "/items/42?page=2",
        headers=[
            ("authorization", f"Bearer {token}"),
            ("x-auth-subject", "mallory"),  # spoofed identity from the client
            ("X-Auth-Admin", "true"),
            ("x-auth-scope", "admin"),
            ("cookie", "session=s3cret; theme=dark; tw_access=abc"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "hop-only"),
            ("te", "trailers"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-custom", "kept"),
        ],
    )
    assert response.status_code == 200
    seen = response.json()
    headers = seen["headers"]
    assert seen["path"] == "/items/42"
    assert seen["query"] == "page=2"
    assert headers["x-auth-subject"] == ["alice"]
    assert headers["x-auth-client-id"] == ["client-1"]
    assert headers["x-auth-scope"] == ["read write"]
    assert len(headers["x-auth-jti"]) == 1
    assert "x-auth-admin" not in headers
    assert "authorization" not in headers
    assert headers["cookie"] == ["theme=dark"]
    assert "x-hop" not in headers
    assert "te" not in headers
    assert headers["x-custom"] == ["kept"]
    # The peer is not a trusted proxy: the client's X-Forwarded-For is replaced, not extended.
    assert headers["x-forwarded-for"] == ["127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    upstream = running.gateway.config.routes[0].upstreams[0]
    assert headers["host"] == [f"127.0.0.1:{upstream.port}"]
    assert headers["x-forwarded-host"] == [running.base.removeprefix("http://")]
    # Hop-by-hop fields of the upstream's answer stop at the gateway (RFC 9110 §7.6.1).
    assert "x-drop-me" not in response.headers
    assert "keep-alive" not in response.headers
    assert response.headers["x-upstream"] == "yes"
    for value in response.headers.values():
        assert token not in value
    audit = running.last_audit()
    assert audit["decision"] == "allow"
    assert (audit["sub"], audit["client_id"], audit["route"]) == ("alice", "client-1", "items")
    assert token not in running.audit.getvalue().decode()


BASE_WITH_COOKIES = """
trust: {{issuer: {issuer}, audience: {audience}}}
auth_cookies: [session, tw_access]
identity_headers: {{subject: x-auth-subject}}
routes:
  - {{name: items, prefix: /items, upstreams: [{upstream}], auth: bearer, scopes: [read]}}
"""


def test_open_route_forwards_authorization_untouched(gateway: GatewayFactory) -> None:
    running = gateway()
    response = running.http.get(
        "/open/x", headers={"authorization": "Basic dXNlcjpwYXNz", "x-auth-subject": "mallory"}
    )
    headers = response.json()["headers"]
    assert headers["authorization"] == ["Basic dXNlcjpwYXNz"]  # the upstream's own auth
    assert "x-auth-subject" not in headers
    assert running.last_audit()["reason"] == "ok"


def test_identity_values_cannot_inject_header_lines(
    gateway: GatewayFactory, mint: Callable[..., str]
) -> None:
    running = gateway()
    token = mint(subject="eve\r\nx-admin: 1 é%")
    response = running.http.get("/items", headers={"authorization": f"Bearer {token}"})
    headers = response.json()["headers"]
    assert headers["x-auth-subject"] == ["eve%0D%0Ax-admin: 1 %C3%A9%25"]
    assert "x-admin" not in headers


def test_round_robin_over_upstreams(gateway: GatewayFactory, upstream: Upstream) -> None:
    second = Upstream()
    with serve(second) as url:
        second.port = int(url.rsplit(":", 1)[1])
        running = gateway(
            """
routes:
  - {{name: rr, prefix: /rr, upstreams: [{upstream}, SECOND], auth: none}}
""".replace("SECOND", url)
        )
        ports = [running.http.get("/rr").json()["port"] for _ in range(4)]
    assert sorted(ports) == sorted([upstream.port, second.port] * 2)
    assert ports[0] != ports[1]


def test_strip_prefix_and_base_path(gateway: GatewayFactory) -> None:
    running = gateway("""
routes:
  - {{name: v1, prefix: /api/v1, upstreams: ["{upstream}/base"], auth: none, strip_prefix: true}}
""")
    # Escapes reach the upstream as the client spelled them; only the prefix's segments go.
    assert running.http.get("/api/v1/users%3A7?q=1").json()["raw_path"] == "/base/users%3A7"
    assert running.http.get("/api/%76%31/x").json()["raw_path"] == "/base/x"
    assert running.http.get("/api/v1x").status_code == 404


def test_methods_and_unknown_routes(gateway: GatewayFactory) -> None:
    running = gateway("""
routes:
  - {{name: ro, prefix: /ro, methods: [GET], upstreams: [{upstream}], auth: none}}
""")
    assert running.http.get("/ro").status_code == 200
    refused = running.http.post("/ro")
    assert refused.status_code == 405
    assert refused.json()["error"] == "method_not_allowed"
    missing = running.http.get("/elsewhere")
    assert (missing.status_code, missing.json()["error"]) == (404, "no_route")
    assert running.last_audit()["reason"] == "no_route"


def test_upstream_status_and_head_pass_through(gateway: GatewayFactory) -> None:
    running = gateway()
    assert running.http.get("/open/status/204").status_code == 204
    assert running.http.get("/open/status/418").status_code == 418
    head = running.http.head("/open/x")
    assert head.status_code == 200
    assert head.content == b""


def test_an_internal_failure_answers_json_500(gateway: GatewayFactory, mint: Mint) -> None:
    class Broken:
        async def acquire(self, key: str, policy: object, now: float) -> object:
            raise RuntimeError("boom")

    running = gateway(limiter=Broken())
    response = running.http.get("/items", headers={"authorization": f"Bearer {mint()}"})
    assert response.status_code == 500
    assert response.json()["error"] == "server_error"
    assert running.last_audit()["reason"] == "internal_error"
