"""WebSocket proxying through a real `tokenward gateway` process (local trust beside a real
`tokenward serve` on SQLite) to a real WebSocket echo upstream on loopback: the upgrade is
decided like a request (no token: 401, wrong scope: 403, a route without `websocket:`: 403,
none of them reaching the upstream), messages are relayed both ways within the route's size
limit, and the connection is closed with 1008 when the token is revoked (expiry: in
test_websocket_expiry.py, on the gateway's clock)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.e2e.live import free_port
from tests.gateway.processes import (
    RunningGateway,
    cli,
    gateway_process,
    server_process,
    service_client,
    token,
)
from tests.gateway.ws_echo import Echo, echo_server

# The feed re-reads the log every 2 s without Redis, and the relay looks every 1 s.
REVOCATION_BOUND = 2.0 + 1.0 + 1.5  # the last term: slack for a shared 2-core machine


@dataclass
class Deployment:
    gateway: RunningGateway
    server: str
    client: tuple[str, str]
    echo: Echo

    @property
    def ws(self) -> str:
        return self.gateway.base.replace("http://", "ws://")

    def bearer(self) -> str:
        return token(self.server, self.client)

    def open(self, path: str, bearer: str | None) -> ClientConnection:
        headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
        return connect(self.ws + path, additional_headers=headers, open_timeout=10)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("websocket")
    data_dir = tmp / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    cli(data_dir, env, "init")
    client = service_client(data_dir, env)
    echo = Echo()
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    with echo_server(echo) as upstream_port, server_process(data_dir, env, port) as server:
        config = _config(tmp / "gateway.yaml", issuer, f"http://127.0.0.1:{upstream_port}")
        args = ("--data-dir", str(data_dir), "--issuer", issuer)
        with gateway_process(config, env, global_args=args) as gateway:
            yield Deployment(gateway, server, client, echo)


def _config(path: Path, issuer: str, upstream: str) -> Path:
    path.write_text(
        f"""
listen: {{host: 127.0.0.1, port: 0}}
trust: {{issuer: "{issuer}", audience: "{issuer}/api", mode: local}}
audit: {{enabled: false}}
routes:
  - name: chat
    prefix: /chat
    upstreams: ["{upstream}"]
    auth: bearer
    scopes: [read]
    websocket: {{max_message_bytes: 4096}}
  - {{name: admin, prefix: /admin, upstreams: ["{upstream}"], auth: bearer, scopes: [write],
      websocket: true}}
  - {{name: plain, prefix: /plain, upstreams: ["{upstream}"], auth: bearer, scopes: [read]}}
"""
    )
    return path


def test_messages_are_relayed_both_ways_with_the_identity(deployment: Deployment) -> None:
    with deployment.open("/chat/room?x=1", deployment.bearer()) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=10) == b"\x00\x01binary"
    seen = deployment.echo.handshakes[-1]
    assert seen["x-auth-client-id"] == "svc"
    assert "authorization" not in seen  # the bearer token stays at the gateway
    assert seen["x-forwarded-for"] == "127.0.0.1"


def _refused(deployment: Deployment, path: str, bearer: str | None) -> httpx.Response:
    before = len(deployment.echo.handshakes)
    with pytest.raises(InvalidStatus) as caught:
        deployment.open(path, bearer)
    assert len(deployment.echo.handshakes) == before  # the upstream never heard of it
    response = caught.value.response
    return httpx.Response(response.status_code, headers=list(response.headers.raw_items()))


def test_an_upgrade_without_a_token_is_a_401_challenge(deployment: Deployment) -> None:
    refused = _refused(deployment, "/chat/room", None)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")


def test_an_upgrade_without_the_scope_is_a_403(deployment: Deployment) -> None:
    refused = _refused(deployment, "/admin/room", deployment.bearer())
    assert refused.status_code == 403
    assert "insufficient_scope" in refused.headers["www-authenticate"]


def test_a_route_without_websocket_refuses_the_upgrade(deployment: Deployment) -> None:
    assert _refused(deployment, "/plain/room", deployment.bearer()).status_code == 403


def test_a_message_over_the_route_limit_closes_with_1009(deployment: Deployment) -> None:
    with deployment.open("/chat/room", deployment.bearer()) as ws:
        ws.send("x" * 4096)
        assert ws.recv(timeout=10) == "x" * 4096
        ws.send("x" * 4097)
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=10)
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 1009


def test_a_multibyte_text_is_measured_in_bytes(deployment: Deployment) -> None:
    with deployment.open("/chat/room", deployment.bearer()) as ws:
        ws.send("é" * 2048)  # 2,048 characters, 4,096 bytes: at the limit
        assert ws.recv(timeout=10) == "é" * 2048
        ws.send("é" * 2049)
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=10)
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 1009


def test_the_upgrade_head_is_bounded_like_any_other(deployment: Deployment) -> None:
    """`limits.max_header_bytes` (32 KiB by default) applies before the upgrade: 431."""
    refused = _refused(deployment, "/chat/room", "x" * 40_000)
    assert refused.status_code == 431


def closed_within(ws: ClientConnection, within: float) -> tuple[int, str, float]:
    """Keep the connection busy until the gateway closes it: (code, reason, seconds taken)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            ws.send("ping")
            ws.recv(timeout=0.2)
        except TimeoutError:
            continue
        except ConnectionClosed as closed:
            frame = closed.rcvd
            if frame is None:
                raise AssertionError(f"closed without a close frame: {closed}") from None
            return frame.code, frame.reason, time.monotonic() - started
    raise AssertionError(f"still open after {within} s")


def test_a_revoked_token_closes_the_connection(deployment: Deployment) -> None:
    bearer = deployment.bearer()
    with deployment.open("/chat/room", bearer) as ws:
        ws.send("before")
        assert ws.recv(timeout=10) == "before"
        revoked = httpx.post(
            f"{deployment.server}/revoke", data={"token": bearer}, auth=deployment.client
        )
        assert revoked.status_code == 200
        code, reason, _took = closed_within(ws, REVOCATION_BOUND)
    assert (code, reason) == (1008, "token_revoked")
