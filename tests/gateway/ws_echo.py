"""A real WebSocket echo upstream on loopback (the `websockets` library's threaded server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from websockets.sync.server import ServerConnection, serve

from tests.e2e.live import free_port


@dataclass
class Echo:
    """Echoes every message and remembers each handshake's headers."""

    handshakes: list[dict[str, str]] = field(default_factory=list)

    def handler(self, connection: ServerConnection) -> None:
        request = connection.request
        if request is not None:
            self.handshakes.append({k.lower(): v for k, v in request.headers.raw_items()})
        for message in connection:
            connection.send(message)


@contextmanager
def echo_server(echo: Echo, **options: Any) -> Iterator[int]:
    """Serve `echo` on a free loopback port (options: e.g. ssl=) until the block ends."""
    port = free_port()
    server = serve(echo.handler, "127.0.0.1", port, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        thread.join(10)
