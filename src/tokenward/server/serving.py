"""uvicorn's Server, told when its shutdown begins.

uvicorn lets every in-flight request finish before it stops, and a long-poll on
GET /revocations may be held 25 s: released at once, its follower moves to another node.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_shutdown()
        await super().shutdown(sockets)
