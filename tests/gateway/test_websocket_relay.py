"""A relayed WebSocket through the gateway served over loopback (uvicorn, with the gateway's
own protocol, as `tokenward gateway` runs it) to a real WebSocket echo upstream: it ends when
its token does (1008 `token_expired` once the gateway's clock reaches `exp`, not before: the
clock is the tests' FrozenClock, so no token lifetime is waited out), it reaches a wss://
upstream with the route's `upstream_tls:`, and the client gets the subprotocol the upstream
chose among its offers."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.conftest import FrozenClock
from tests.gateway.conftest import GatewayFactory
from tests.gateway.test_websocket import closed_within
from tests.gateway.ws_echo import Echo, echo_server
from tests.pki import Pki

CONFIG = """
trust: {{issuer: {issuer}, audience: {audience}}}
routes:
  - {{name: chat, prefix: /chat, upstreams: [ECHO], auth: bearer, scopes: [read],
      websocket: true TLS}}
"""
LIFETIME = 900  # the minted tokens'
CHECK_BOUND = 1.0 + 1.5  # the relay's look interval, and slack for a shared machine


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    with echo_server(Echo()) as port:
        yield f"http://127.0.0.1:{port}"


def _url(base: str) -> str:
    return base.replace("http://", "ws://") + "/chat/room"


def test_the_connection_closes_when_the_token_expires(
    gateway: GatewayFactory, echo: str, mint: Callable[..., str], clock: FrozenClock
) -> None:
    running = gateway(CONFIG.replace("ECHO", echo).replace(" TLS", ""))
    bearer = mint()
    with connect(
        _url(running.base), additional_headers={"authorization": f"Bearer {bearer}"}
    ) as ws:
        clock.advance(LIFETIME - 1)  # one second left: still relayed
        ws.send("still valid")
        assert ws.recv(timeout=10) == "still valid"
        clock.advance(1)
        code, reason, took = closed_within(ws, CHECK_BOUND)
    assert (code, reason) == (1008, "token_expired")
    assert took < CHECK_BOUND


def test_a_wss_upstream_is_reached_with_the_routes_tls_settings(
    gateway: GatewayFactory, mint: Callable[..., str], tmp_path: Path
) -> None:
    pki = Pki(tmp_path / "pki")
    server = pki.server()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*server.files)
    echo = Echo()
    with echo_server(echo, ssl=context) as port:
        trusted = CONFIG.replace("ECHO", f"https://127.0.0.1:{port}").replace(
            " TLS", f', upstream_tls: {{{{ca: "{pki.ca.cert_path}"}}}}'
        )
        running = gateway(trusted)
        headers = {"authorization": f"Bearer {mint()}"}
        with connect(_url(running.base), additional_headers=headers) as ws:
            ws.send(b"over tls")
            assert ws.recv(timeout=10) == b"over tls"
        assert len(echo.handshakes) == 1
        # The system trust does not know the test CA: the upgrade is a 502, nothing relayed.
        untrusted = gateway(trusted.replace(f'ca: "{pki.ca.cert_path}"', "server_name: localhost"))
        with pytest.raises(Exception, match="502"):
            connect(_url(untrusted.base), additional_headers=headers)
        assert len(echo.handshakes) == 1


def test_the_upstreams_subprotocol_is_the_clients(
    gateway: GatewayFactory, mint: Callable[..., str]
) -> None:
    echo = Echo()
    with echo_server(echo, subprotocols=[Subprotocol("chat.v2")]) as port:
        running = gateway(CONFIG.replace("ECHO", f"http://127.0.0.1:{port}").replace(" TLS", ""))
        offered = [Subprotocol("chat.v1"), Subprotocol("chat.v2")]
        headers = {"authorization": f"Bearer {mint()}"}
        with connect(_url(running.base), additional_headers=headers, subprotocols=offered) as ws:
            assert ws.subprotocol == "chat.v2"  # the upstream's choice among the client's offers
            ws.send("x")
            assert ws.recv(timeout=10) == "x"
        assert echo.handshakes[0]["sec-websocket-protocol"] == "chat.v1, chat.v2"
