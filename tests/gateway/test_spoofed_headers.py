"""Fields a client could use to pose as someone, somewhere or some other URL never reach the
upstream, under any spelling a server might fold onto the real name; and the answer carries one
Date and no upstream Server. Over loopback, against the echoing upstream."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.gateway.conftest import GatewayFactory, Running

CONFIG = """
trust: {{issuer: {issuer}, audience: {audience}}}
trusted_proxies: [127.0.0.0/8]
identity_headers: {{subject: x-user, client_id: x-app}}
routes:
  - {{name: items, prefix: /items, upstreams: [{upstream}], auth: bearer, scopes: [read]}}
  - {{name: open, prefix: /open, upstreams: [{upstream}], auth: none}}
"""
# (name as sent, the name a server that folds case and `_` reads it as)
SPOOFS = [
    ("X_Auth_Subject", "x-auth-subject"),
    ("x-auth_subject", "x-auth-subject"),
    ("X-AUTH-SUBJECT", "x-auth-subject"),
    ("X_AUTH_JTI", "x-auth-jti"),
    ("x_auth_anything", "x-auth-anything"),
    ("X-User", "x-user"),
    ("X_User", "x-user"),
    ("x_app", "x-app"),
    ("Forwarded", "forwarded"),
    ("X-Real-IP", "x-real-ip"),
    ("X_Real_IP", "x-real-ip"),
    ("True-Client-IP", "true-client-ip"),
    ("X-Original-URL", "x-original-url"),
    ("X_Original_URL", "x-original-url"),
    ("X-Rewrite-URL", "x-rewrite-url"),
    ("X-Forwarded-Prefix", "x-forwarded-prefix"),
    ("X-HTTP-Method-Override", "x-http-method-override"),
    ("X_HTTP_Method", "x-http-method"),
    ("X-Method-Override", "x-method-override"),
    ("X_Forwarded_For", "x-forwarded-for"),
    ("X_Forwarded_Proto", "x-forwarded-proto"),
    ("X_Forwarded_Host", "x-forwarded-host"),
    ("Content_Length", "content-length"),
    ("Transfer_Encoding", "transfer-encoding"),
]
# What the gateway itself sets: the only values under these names the upstream may see.
GATEWAY_SET = {"x-user", "x-app", "x-auth-scope", "x-auth-jti", "x-forwarded-for"}
GATEWAY_SET |= {"x-forwarded-proto", "x-forwarded-host", "host", "content-length"}


def fold(name: str) -> str:
    return name.lower().replace("_", "-")


@pytest.fixture
def running(gateway: GatewayFactory) -> Running:
    # As `tokenward gateway` serves it (cli.uvicorn_config): no Server header of its own.
    return gateway(CONFIG, server={"server_header": False})


@pytest.mark.parametrize("route", ["/items/1", "/open/1"])
def test_spoofed_identity_and_forwarding_fields_never_reach_the_upstream(
    running: Running, mint: Callable[..., str], route: str
) -> None:
    token = mint(subject="alice", client_id="web", scopes=("read",))
    sent = [(name, "spoofed") for name, _ in SPOOFS if not name.lower().startswith("content")]
    sent += [("authorization", f"Bearer {token}"), ("x-custom_kept", "kept")]
    response = running.http.get(route, headers=sent)
    assert response.status_code == 200, response.text
    seen: dict[str, list[str]] = response.json()["headers"]
    spoofed = {folded for _, folded in SPOOFS}
    for name, values in seen.items():
        if fold(name) in spoofed or fold(name).startswith("x-auth-"):
            assert name in GATEWAY_SET, name  # the gateway's own spelling, never the client's
            assert "spoofed" not in values, name
    assert seen["x-custom_kept"] == ["kept"]  # underscores alone are no reason to drop
    if route == "/items/1":
        assert seen["x-user"] == ["alice"]
        assert seen["x-app"] == ["web"]
    else:
        assert "x-user" not in seen
    # The peer is a trusted proxy: its X-Forwarded-For chain is extended; an underscore
    # spelling of it is not a chain, and Forwarded is never passed on, trusted or not.
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert "forwarded" not in seen


def test_underscore_framing_fields_do_not_frame_the_request(running: Running) -> None:
    response = running.http.post(
        "/open/1",
        content=b"0123456789",
        headers={"Content_Length": "3", "Transfer_Encoding": "chunked"},
    )
    seen = response.json()
    assert seen["size"] == 10
    assert seen["headers"]["content-length"] == ["10"]
    assert "content_length" not in seen["headers"]
    assert "transfer_encoding" not in seen["headers"]


def test_one_date_and_no_upstream_server_header(running: Running) -> None:
    proxied = running.http.get("/open/1")
    assert proxied.status_code == 200
    assert proxied.headers["x-upstream"] == "yes"  # the upstream's own fields still pass
    refused = running.http.get("/nowhere")
    assert refused.status_code == 404
    for response in (proxied, refused):
        assert len(response.headers.get_list("date")) == 1
        assert "server" not in response.headers
