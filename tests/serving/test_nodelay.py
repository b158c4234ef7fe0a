"""Accepted connections have Nagle's algorithm off, on asyncio's loop and on uvloop.

The listening socket is made as `tokenward serve` makes it (deploy/startup.listen, whose
`proto` is 0: asyncio then leaves Nagle on), served by uvicorn with the server options both the
authorization server and the gateway use, and looked at from the server's side of the
connection after a real request over loopback.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
import uvloop

from tokenward.deploy.startup import listen
from tokenward.serving.limits import HeadLimits
from tokenward.serving.loop import loop_factory
from tokenward.serving.protocol import server_options


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _server_side_nodelay() -> int:
    sock = listen("127.0.0.1", 0)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        **server_options(HeadLimits(), fds_per_connection=1),
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start")
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        (connection,) = server.server_state.connections
        accepted = connection.transport.get_extra_info("socket")
        value: int = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        writer.close()
        return value
    finally:
        server.should_exit = True
        await serving
        sock.close()


@pytest.mark.parametrize(
    "factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_accepted_connections_send_without_waiting_for_acks(
    factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(_server_side_nodelay()) != 0


def test_servers_run_on_uvloop_when_it_is_installed() -> None:
    assert loop_factory() is uvloop.new_event_loop
