"""Routing and forwarding agree on one path (gateway/paths.py), over loopback HTTP.

The public and the protected route share one upstream, as they do when a gateway guards one
application's admin area: a path the gateway routes as public but the upstream reads as
`/admin/...` would serve admin pages to anyone. Requests are sent with exact request targets
(httpx would otherwise resolve dot segments itself); the upstream reports the raw target it got.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.conftest import GatewayFactory, Running
from tests.gateway.upstream_app import Upstream
from tokenward.gateway.admission import admit
from tokenward.gateway.audit import AuditRecord
from tokenward.gateway.compiled import Compiled
from tokenward.gateway.config import parse_config
from tokenward.gateway.model import Route
from tokenward.gateway.paths import MAX_PATH, resolve_scope
from tokenward.gateway.policy import Denied
from tokenward.gateway.proxy import request_target
from tokenward.gateway.yamlnodes import ConfigError

CONFIG = """
trust: {{issuer: {issuer}, audience: {audience}}}
routes:
  - {{name: public, prefix: /public, upstreams: [{upstream}], auth: none}}
  - {{name: admin, prefix: /admin, upstreams: [{upstream}], auth: bearer, scopes: [admin]}}
  - {{name: home, prefix: /, upstreams: [{upstream}], auth: none}}
"""
STRIP = """
routes:
  - {{name: v1, prefix: /api/v1, upstreams: ["{upstream}/base"], auth: none, strip_prefix: true}}
"""
# The examples and their relatives. Plain dot segments are resolved, so the request
# lands on the admin route and meets its token check (401); every spelling an upstream could
# read differently from the gateway is refused (400).
TRAVERSALS = [
    ("/public/../admin/x", 401),
    ("/public/x/../../admin/", 401),
    ("/public/./../admin/x", 401),
    ("//admin/x", 401),
    ("/%61dmin/x", 401),
    ("/public/%2e%2e/admin/x", 400),
    ("/public/%2E%2E/admin/x", 400),
    ("/public/.%2e/admin/x", 400),
    ("/public%2f..%2fadmin/x", 400),
    ("/public/..%2fadmin/x", 400),
    ("/public/..%2Fadmin/x", 400),
    ("/public/..%5cadmin/x", 400),
    ("/public\\..\\admin/x", 400),
    ("/public/..;/admin/x", 400),
    ("/public/..;x=1/admin/x", 400),
    ("/public/.;/../admin/x", 400),
    ("/public/..%3B/admin/x", 400),
    ("/admin;/x", 400),
    ("/admin;jsessionid=1/x", 400),
    ("/;/admin/x", 400),
    ("/public/%C0%AE%C0%AE/admin/x", 400),
    ("/public/%00/../admin/x", 400),
    ("/public/%zz/x", 400),
]


def send(running: Running, target: str, token: str | None = None) -> httpx.Response:
    """GET with exactly `target` on the request line."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return running.http.get("/", headers=headers, extensions={"target": target.encode("ascii")})


def upstream_readings(target: str) -> set[str]:
    """How upstream servers read a request target they are sent: percent-decoded once, dot
    segments removed (RFC 3986 §5.2.4); some also merge `//`, strip `;` parameters (before or
    after decoding) or take `\\` for `/`. Written apart from gateway/paths.py on purpose."""

    def decode(text: str) -> str:
        return unquote_to_bytes(text).decode("utf-8", "surrogateescape")

    def merge(text: str) -> str:
        while "//" in text:
            text = text.replace("//", "/")
        return text

    def strip(text: str) -> str:
        return "/".join(segment.split(";", 1)[0] for segment in text.split("/"))

    decoded = decode(target)
    return {
        remove_dots(decoded),
        remove_dots(merge(decoded)),
        remove_dots(merge(decode(strip(target)))),
        remove_dots(merge(strip(decoded))),
        remove_dots(merge(decoded.replace("\\", "/"))),
    }


def remove_dots(path: str) -> str:
    out: list[str] = []
    segments = path.split("/")[1:]
    for segment in segments:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    trailing = "/" if segments and segments[-1] in (".", "..") and out else ""
    return "/" + "/".join(out) + trailing


def route_for(routes: tuple[Route, ...], path: str) -> str:
    """The longest segment-wise prefix, as an upstream application's own router would pick."""
    matching = [route for route in routes if route.matches(path)]
    return max(matching, key=lambda route: len(route.prefix)).name


@pytest.fixture
def running(gateway: GatewayFactory) -> Running:
    return gateway(CONFIG)


@pytest.fixture
def admin_token(mint: Callable[..., str]) -> str:
    return mint(subject="root", scopes=("admin",))


@pytest.mark.parametrize(("target", "status"), TRAVERSALS)
def test_traversal_never_reaches_the_upstream_without_a_token(
    running: Running, upstream: Upstream, target: str, status: int
) -> None:
    before = upstream.requests
    response = send(running, target)
    assert response.status_code == status, response.text
    assert upstream.requests == before  # the upstream saw nothing at all
    audit = running.last_audit()
    if status == 400:
        body = response.json()
        assert body["error"] == "invalid_request"
        assert body["error_description"]
        assert response.headers["cache-control"] == "no-store"
        assert audit["reason"] == "invalid_path"
    else:
        assert (audit["route"], audit["reason"]) == ("admin", "missing_token")


def test_a_resolved_traversal_is_forwarded_as_resolved(running: Running, admin_token: str) -> None:
    seen = send(running, "/public/x/../../admin/a/./b", admin_token).json()
    assert seen["raw_path"] == "/admin/a/b"
    assert running.last_audit()["route"] == "admin"


@pytest.mark.parametrize(
    ("target", "forwarded"),
    [
        ("/public/caf%C3%A9", "/public/caf%C3%A9"),
        ("/public/caf%c3%a9", "/public/caf%c3%a9"),  # escapes go up as the client spelled them
        ("/public/%7Euser/a%20b", "/public/%7Euser/a%20b"),
        ("/public/file.tar.gz", "/public/file.tar.gz"),
        ("/public/.well-known/x", "/public/.well-known/x"),
        ("/public/a;v=1/b", "/public/a;v=1/b"),  # a parameter that routes the same anyway
        ("/public/%252e%252e/x", "/public/%252e%252e/x"),  # the upstream decodes once: `%2e%2e`
        ("/public/%3Fnot-a-query", "/public/%3Fnot-a-query"),
        ("/public//x//y/", "/public/x/y/"),
        ("/public/./x/../y", "/public/y"),
        ("/public/x/..", "/public/"),
        ("/../public/x", "/public/x"),
    ],
)
def test_legitimate_paths_pass(running: Running, target: str, forwarded: str) -> None:
    response = send(running, target)
    assert response.status_code == 200, response.text
    assert response.json()["raw_path"] == forwarded
    assert running.last_audit()["route"] == "public"


def test_strip_prefix_counts_segments_of_the_resolved_path(gateway: GatewayFactory) -> None:
    running = gateway(STRIP)
    cases = {
        "/api/v1/users/7": "/base/users/7",
        "/api/v1": "/base/",
        "/api/%76%31/users/7": "/base/users/7",  # `/api/v1`, spelled with escapes
        "/api/v1/../v1/./x%20y": "/base/x%20y",
        "/api//v1//x": "/base/x",
    }
    for target, forwarded in cases.items():
        response = send(running, target)
        assert response.status_code == 200, (target, response.text)
        assert response.json()["raw_path"] == forwarded, target
    assert send(running, "/api/v1/..%2F..%2Fadmin").status_code == 400
    assert send(running, "/api/v1/../../admin").status_code == 404  # resolved: no such route


def test_path_length_is_bounded(running: Running, upstream: Upstream) -> None:
    before = upstream.requests
    response = send(running, "/public/" + "a" * MAX_PATH)
    # Refused by the request-head limits (tokenward.serving) before the app sees it.
    assert response.status_code == 414
    assert response.json()["error"] == "invalid_request"
    assert upstream.requests == before


# Paths are strings of pieces that servers are known to read in more than one way; `/` is a
# piece like the others, so `admin;` is as likely as `admin/`. Route names and separators come
# more often, so that not every example is refused early.
REFUSED_PIECES = [
    "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "..;", ".;", "\\", "%", "%00", "%C0%AE",
]  # fmt: skip
KEPT_PIECES = ["%3B", "%252e", "%252f", "%C3%A9", "%E2%82%AC", "%7E", "%61dmin", "a%20b", "//"]
COMMON_PIECES = ["public", "admin", "x", ".", "..", ";", ";x=1"]
PIECES = REFUSED_PIECES + KEPT_PIECES + COMMON_PIECES * 3 + ["/"] * 16
targets = st.builds(
    lambda start, pieces: "/" + start + "".join(pieces),
    st.sampled_from(["", "public", "admin"]),
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=12),
)
COMPILED = Compiled(
    parse_config(CONFIG.format(upstream="http://u", issuer="https://i", audience="api"))
)
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(max_examples=1000, deadline=None)
@given(target=targets)
def test_routing_agrees_with_every_upstream_reading(target: str) -> None:
    """The gateway's decision, in process: refused, or every reading of the forwarded target
    selects the route the gateway chose, and resolving the target again changes nothing."""
    routes = COMPILED.config.routes
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/ignored",  # the server's decoded path must play no part
        "raw_path": target.encode("ascii"),
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
    }
    decision = _decide(scope)
    if isinstance(decision, Denied):
        assert (decision.status, decision.reason) == (400, "invalid_path")
        return
    raw_target, route = decision
    forwarded = request_target({"raw_path": raw_target}, route, route.upstreams[0])
    text = forwarded.decode("ascii")
    assert {route_for(routes, reading) for reading in upstream_readings(text)} == {route.name}
    assert resolve_scope({"raw_path": forwarded})[1] == forwarded


def _decide(scope: dict[str, Any]) -> tuple[bytes, Route] | Denied:
    """What the gateway's first two steps make of a request: its target and route, or a
    refusal."""
    try:
        path, target, readings = resolve_scope(scope)
        route, *_ = admit(COMPILED, scope, path, readings, AuditRecord("GET"))
    except Denied as denied:
        return denied
    return target, route


@PROPERTY
@given(target=targets)
def test_forwarded_target_routes_where_the_gateway_routed(
    running: Running, admin_token: str, target: str
) -> None:
    """Over HTTP: without a token, nothing the upstream receives reads as an admin path; with
    one, the raw target the upstream received selects the route the audit line names."""
    routes = running.gateway.config.routes
    response = send(running, target)
    audit = running.last_audit()
    if response.status_code == 200:
        readings = upstream_readings(response.json()["raw_path"])
        assert {route_for(routes, reading) for reading in readings} == {audit["route"]}
        assert audit["route"] != "admin"
    elif response.status_code == 401:
        assert (audit["route"], audit["reason"]) == ("admin", "missing_token")
    else:
        assert (response.status_code, audit["reason"]) == (400, "invalid_path"), audit
    response = send(running, target, admin_token)
    audit = running.last_audit()
    if response.status_code == 200:
        readings = upstream_readings(response.json()["raw_path"])
        assert {route_for(routes, reading) for reading in readings} == {audit["route"]}
    else:
        assert (response.status_code, audit["reason"]) == (400, "invalid_path"), audit


@pytest.mark.parametrize(
    "prefix", ["/a//b", "/a/../b", "/a/./b", "/..", "/a;b", "/a%2Fb", "/a\\\\b"]
)
def test_a_prefix_no_resolved_path_could_match_is_refused_at_load(prefix: str) -> None:
    text = f'routes:\n  - {{name: r, prefix: "{prefix}", upstreams: [http://u], auth: none}}\n'
    with pytest.raises(ConfigError, match="prefix: must be a plain path"):
        parse_config(text)
    parse_config(text.replace(prefix, "/a/b/"))  # a trailing `/` is fine
