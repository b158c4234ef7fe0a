"""The client's address behind trusted proxies, set once for everything that reads it.

Outermost middleware: it rewrites `scope["client"]` (in place, as uvicorn's own proxy-headers
middleware does, so uvicorn's access log shows it too) before the sign-in throttle, the monitor
(events, blocklist), the device pages and the token endpoint read `request.client`. The
X-Forwarded-For walk is the gateway's (tokenward.core.proxies.client_address).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from tokenward.core.proxies import IpNetwork, client_address

FORWARDED_FOR = b"x-forwarded-for"


class ClientAddressMiddleware:
    def __init__(self, app: ASGIApp, trusted: tuple[IpNetwork, ...]) -> None:
        self.app = app
        self._trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._trusted and scope["type"] in ("http", "websocket"):
            peer = scope.get("client")
            forwarded = [value for name, value in scope["headers"] if name == FORWARDED_FOR]
            if peer and forwarded:
                client = client_address(peer[0], forwarded, self._trusted)
                if client != peer[0]:
                    scope["client"] = (client, 0)  # the port was the proxy's
        await self.app(scope, receive, send)
