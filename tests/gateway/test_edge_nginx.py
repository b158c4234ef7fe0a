"""docs/edge.md's nginx configuration, run by a real nginx in front of a real gateway (its
`authz:` API) and a real upstream: identity forwarded, refusals with their real status, path
spellings decided as the gateway decides them, and cached decisions that never cross tokens."""

from __future__ import annotations

import http.client
import json
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.docs.blocks import ROOT, blocks
from tests.e2e.live import free_port
from tests.gateway.conftest import GatewayFactory, Running
from tests.gateway.upstream_app import Upstream
from tests.nginx_process import running_nginx

Mint = Callable[..., str]
CONFIG = """
trust:
  issuer: {issuer}
  audience: {audience}
trusted_proxies: [127.0.0.1/32]
authz:
  mode: nginx
  cache_seconds: 30
routes:
  - name: admin
    prefix: /admin
    upstreams: [{upstream}]
    auth: bearer
    scopes: [admin]
  - name: items
    prefix: /items
    upstreams: [{upstream}]
    auth: bearer
    scopes: [read]
  - name: limited
    prefix: /limited
    upstreams: [{upstream}]
    auth: none
    rate_limit: {{requests: 2, per: 600, key: ip}}
  - name: a
    prefix: /a
    upstreams: [{upstream}]
    auth: none
"""


def documented_block() -> str:
    covering = "tests/gateway/test_edge_nginx.py::test_documented_nginx_config_runs"
    found = [block for block in blocks(ROOT / "docs" / "edge.md") if block.covered_by == covering]
    assert len(found) == 1, "docs/edge.md shows one whole nginx configuration"
    return found[0].text


@contextmanager
def edge(running: Running, upstream: Upstream) -> Iterator[int]:
    """The documented block with this test's addresses; yields nginx's port."""
    port = free_port()
    base = Path(tempfile.mkdtemp(prefix="tw-edge-nginx-"))
    text = documented_block()
    gateway = running.base.removeprefix("http://")
    replaced = {
        "127.0.0.1:8080": gateway,
        "127.0.0.1:9000": f"127.0.0.1:{upstream.port}",
        "127.0.0.1:8000": f"127.0.0.1:{port}",
        "/dev/shm/tokenward-authz": str(base / "cache"),  # noqa: S108 - the documented path
    }
    for documented, actual in replaced.items():
        assert documented in text, documented
        text = text.replace(documented, actual)
    with running_nginx(base, text, port):
        yield port


def request(
    port: int, target: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with `target` sent byte for byte (http.client does not normalise it)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit_count(running: Running, at_least: int) -> int:
    """Audit lines written so far, once there are `at_least` (bounded wait: each line is
    written just after its answer went out)."""
    deadline = time.monotonic() + 5
    while True:
        count = len(running.audit.getvalue().splitlines())
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.005)


def audits(running: Running) -> list[dict[str, Any]]:
    return [json.loads(line) for line in running.audit.getvalue().splitlines()]


def test_documented_nginx_config_runs(
    gateway: GatewayFactory, upstream: Upstream, mint: Mint
) -> None:
    running = gateway(CONFIG)
    with edge(running, upstream) as port:
        token = mint(subject="alice", client_id="client-1", scopes=("read",))
        spoofed = {"X-Auth-Subject": "mallory", "X-Original-URI": "/a/open", **bearer(token)}
        status, _, body = request(port, "/items/42?page=2", spoofed)
        assert status == 200, body
        seen = json.loads(body)
        assert seen["path"] == "/items/42"
        assert seen["query"] == "page=2"
        assert seen["headers"]["x-auth-subject"] == ["alice"]
        assert seen["headers"]["x-auth-client-id"] == ["client-1"]
        assert seen["headers"]["x-auth-scope"] == ["read"]
        assert "authorization" not in seen["headers"]
        decided = audits(running)[-1]
        assert (decided["route"], decided["decision"], decided["sub"]) == (
            "items",
            "allow",
            "alice",
        )
        assert decided["method"] == "GET"

        status, headers, _ = request(port, "/items/42")
        assert status == 401
        assert headers["www-authenticate"].startswith("Bearer")

        status, headers, _ = request(port, "/items/42", bearer(mint(scopes=("write",))))
        assert status == 403
        assert 'error="insufficient_scope"' in headers["www-authenticate"]

        # Statuses nginx's auth_request cannot carry come back through X-Tokenward-Status.
        assert request(port, "/nowhere", bearer(token))[0] == 404
        assert [request(port, "/limited/x")[0] for _ in range(2)] == [200, 200]
        status, headers, _ = request(port, "/limited/x")
        assert status == 429
        assert int(headers["retry-after"]) > 0


@pytest.mark.parametrize(
    ("target", "route"),
    [
        ("/a/../admin/users", "admin"),
        ("/a/./../admin/users", "admin"),
        ("//admin/users", "admin"),
        ("/a//..//admin/users", "admin"),
        ("/a/x/../../admin/users", "admin"),
        ("/a/%2e%2e/admin/users", None),
        ("/a/.%2E/admin/users", None),
        ("/a%2F..%2Fadmin/users", None),
        ("/a/..%2Fadmin/users", None),
        ("/a/..;/admin/users", None),
        ("/a/%2561dmin", "a"),
    ],
)
def test_path_spellings_are_decided_as_the_gateway_resolves_them(
    gateway: GatewayFactory, upstream: Upstream, mint: Mint, target: str, route: str | None
) -> None:
    """Without the admin scope nothing reaches /admin, however the path is spelled: either
    the decision is the admin route's (and refuses) or the spelling is refused outright."""
    running = gateway(CONFIG)
    with edge(running, upstream) as port:
        reader = bearer(mint(scopes=("read",)))
        before = upstream.requests
        status, _, body = request(port, target, reader)
        decided = audits(running)[-1] if audit_count(running, 1) else {}
        if route == "admin":
            assert status == 403, body
            assert (decided["route"], decided["reason"]) == ("admin", "insufficient_scope")
            assert upstream.requests == before
            admin = bearer(mint(scopes=("admin",)))
            assert request(port, target, admin)[0] == 200
        elif route is None:
            # Refused by nginx itself (400) or by the gateway (invalid_path): never proxied.
            assert status == 400, body
            assert upstream.requests == before
            if decided:
                assert decided["reason"] == "invalid_path"
        else:
            assert status == 200, body
            assert decided["route"] == route


def test_cached_decisions_never_cross_tokens(
    gateway: GatewayFactory, upstream: Upstream, mint: Mint
) -> None:
    running = gateway(CONFIG)
    with edge(running, upstream) as port:
        alice = bearer(mint(subject="alice", scopes=("read",)))
        assert request(port, "/items/1", alice)[0] == 200
        assert audit_count(running, 1) == 1
        assert request(port, "/items/1", alice)[0] == 200  # from nginx's cache
        # Other credentials on the same URI are decided by the gateway, never by the cache.
        bob = mint(subject="bob", scopes=("write",))
        assert request(port, "/items/1", bearer(bob))[0] == 403
        assert request(port, "/items/1")[0] == 401
        tampered = bearer(mint(subject="alice", scopes=("read",))[:-4] + "AAAA")
        assert request(port, "/items/1", tampered)[0] == 401
        assert audit_count(running, 4) == 4  # alice once: her second request was cached
        assert [line["status"] for line in audits(running)] == [200, 403, 401, 401]
        assert audits(running)[0]["sub"] == "alice"
        # Refusals are never cached: bob is refused again by the gateway.
        assert request(port, "/items/1", bearer(bob))[0] == 403
        assert audit_count(running, 5) == 5
        seen = json.loads(request(port, "/items/1", alice)[2])
        assert seen["headers"]["x-auth-subject"] == ["alice"]


def test_only_trusted_proxies_get_decisions(gateway: GatewayFactory, mint: Mint) -> None:
    untrusted = CONFIG.replace("[127.0.0.1/32]", "[10.9.9.9/32]")
    running = gateway(untrusted)
    response = running.http.get(
        "/_authz",
        headers={**bearer(mint()), "x-original-method": "GET", "x-original-uri": "/items/1"},
    )
    assert response.status_code == 403
    assert response.json()["error"] == "authz_untrusted"
    assert re.fullmatch(r"no-store", response.headers["cache-control"])
