"""Pure-ASGI timing of every HTTP request into `ServerMetrics` (no response wrapping)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tokenward.ops.metrics import ServerMetrics

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestMetrics:
    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers if the app fails before starting a response

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, observe)
        finally:
            self.metrics.request(
                scope["path"], scope["method"], status, time.perf_counter() - started
            )
