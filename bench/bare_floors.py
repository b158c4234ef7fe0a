"""The least a Python service can do on the edge paths, for P3C and P3W's `-bare` figures.

Both run on uvloop with httptools' C parser and nothing else: no ASGI scope or messages, no
task per request, no policy. `check` answers a proxy's check (compares the bearer credential
in constant time, answers 200 with the identity headers or 401); `proxy` forwards each request
as received to the upstream on one kept-alive connection per client connection and writes back
the upstream's answer once its parser says it is whole. What nginx does per request beside them
says how far any Python service could take a figure on this machine; the gateway beside them,
what its own layers cost.

    python -m bench.bare_floors check PORT           (P3C_FLOOR_TOKEN=... in the environment)
    python -m bench.bare_floors proxy PORT UPSTREAM  (SO_REUSEPORT: run it twice for two workers)
"""

from __future__ import annotations

import asyncio
import hmac
import os
import sys

import httptools
import uvloop

ALLOWED = (
    b"HTTP/1.1 200 OK\r\nx-auth-subject: user-0\r\nx-auth-client-id: bench-client\r\n"
    b"x-auth-scope: read write\r\ncache-control: no-store\r\ncontent-length: 0\r\n\r\n"
)
REFUSED = b"HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer\r\ncontent-length: 0\r\n\r\n"


class Check(asyncio.Protocol):
    expected = b"Bearer " + os.environ.get("P3C_FLOOR_TOKEN", "").encode()

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.authorization = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self.authorization = value

    def on_message_complete(self) -> None:
        allowed = len(self.expected) > 7 and hmac.compare_digest(self.authorization, self.expected)
        if self.transport is not None:
            self.transport.write(ALLOWED if allowed else REFUSED)
        self.authorization = b""


class _Upstream(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.parts: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parts.append(data)
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.client.write(b"".join(self.parts))
        self.parts = []


class Proxy(asyncio.Protocol):
    upstream: tuple[str, int] = ("127.0.0.1", 0)

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.parts: list[bytes] = []
        self.to_upstream: _Upstream | None = None
        self.connecting: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.to_upstream is not None and self.to_upstream.transport is not None:
            self.to_upstream.transport.close()

    def data_received(self, data: bytes) -> None:
        self.parts.append(data)
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        request, self.parts = b"".join(self.parts), []
        upstream = self.to_upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.write(request)
        elif self.transport is not None:
            self.connecting = asyncio.get_running_loop().create_task(self._connect(request))

    async def _connect(self, request: bytes) -> None:
        client = self.transport
        if client is None:
            return
        transport, self.to_upstream = await asyncio.get_running_loop().create_connection(
            lambda: _Upstream(client), *self.upstream
        )
        transport.write(request)


async def _serve(kind: str, port: int) -> None:
    protocol: type[asyncio.Protocol] = Check if kind == "check" else Proxy
    server = await asyncio.get_running_loop().create_server(
        protocol, "127.0.0.1", port, reuse_port=True
    )
    await server.serve_forever()


def main(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    if kind == "proxy":
        Proxy.upstream = ("127.0.0.1", int(argv[2]))
    uvloop.run(_serve(kind, port))


if __name__ == "__main__":
    main(sys.argv[1:])
