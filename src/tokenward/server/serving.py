"""uvicorn's Server, told when it has started, when its shutdown begins and when it ends.

uvicorn lets every in-flight request finish before it stops, and a long-poll on
GET /revocations may be held 25 s: released at once, its follower moves to another node.
After a SIGTERM or SIGINT uvicorn re-raises the signal once its shutdown is done, which ends
the process before `serve()` returns to its caller: what must happen last (the access log's
buffered lines written out) happens in `after_shutdown`, inside the shutdown.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn


class Server(uvicorn.Server):
    """`on_started`: told once the sockets accept (a worker tells its supervisor)."""

    def __init__(
        self,
        config: uvicorn.Config,
        on_shutdown: Callable[[], None],
        on_started: Callable[[], None] | None = None,
        after_shutdown: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown
        self._on_started = on_started
        self._after_shutdown = after_shutdown

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit and self._on_started is not None:
            self._on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_shutdown()
        try:
            await super().shutdown(sockets)
        finally:
            if self._after_shutdown is not None:
                self._after_shutdown()
