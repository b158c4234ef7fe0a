"""A relayed WebSocket ends when its token does: closed with 1008 `token_expired` once the
gateway's clock reaches `exp`, not before. The gateway serves over loopback (uvicorn, as
`tokenward gateway` runs it) in front of a real WebSocket echo upstream; its clock is the
tests' FrozenClock, so the expiry is reached without waiting out a token's lifetime."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve

from tests.conftest import FrozenClock
from tests.e2e.live import free_port
from tests.gateway.conftest import GatewayFactory
from tests.gateway.test_websocket import closed_within

CONFIG = """
trust: {{issuer: {issuer}, audience: {audience}}}
routes:
  - {{name: chat, prefix: /chat, upstreams: [ECHO], auth: bearer, scopes: [read],
      websocket: true}}
"""
LIFETIME = 900  # the minted tokens'
CHECK_BOUND = 1.0 + 1.5  # the relay's look interval, and slack for a shared machine


def _echo(connection: ServerConnection) -> None:
    for message in connection:
        connection.send(message)


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    port = free_port()
    server = serve(_echo, "127.0.0.1", port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join(10)


def test_the_connection_closes_when_the_token_expires(
    gateway: GatewayFactory, echo: str, mint: Callable[..., str], clock: FrozenClock
) -> None:
    running = gateway(CONFIG.replace("ECHO", echo))
    bearer = mint()
    url = running.base.replace("http://", "ws://") + "/chat/room"
    with connect(url, additional_headers={"authorization": f"Bearer {bearer}"}) as ws:
        clock.advance(LIFETIME - 1)  # one second left: still relayed
        ws.send("still valid")
        assert ws.recv(timeout=10) == "still valid"
        clock.advance(1)
        code, reason, took = closed_within(ws, CHECK_BOUND)
    assert (code, reason) == (1008, "token_expired")
    assert took < CHECK_BOUND
