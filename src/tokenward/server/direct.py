"""The busiest endpoints served straight from the middleware chain, past the framework's
own per-request layers.

`POST /token` and `POST /introspect` are most of a deployment's traffic. Through FastAPI each
request also crossed Starlette's error, exception and body-limit middleware, FastAPI's exit
stack, the router's regex walk and the route wrapper: about a quarter of the in-process time of
a client_credentials request (docs/performance.md). Here a request whose exact method and
path are in the table goes to its endpoint directly; every other request, a `GET /token`
included, continues to the framework as before.

Nothing is skipped that these endpoints need: the deployment's own middleware (client
address, mTLS header, tracing, metrics, monitor) sits outside this layer, the endpoints bound
their bodies themselves, and errors are rendered by the application's own exception handlers,
looked up as Starlette's exception middleware looks them up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Any]


def route_path(scope: Scope) -> str:
    """The path Starlette's router matches: the ASGI path without the root path, when the path
    starts with it at a segment boundary. Starlette's own helper for this is private API, so the
    rule is written out here; tests/server/test_direct.py checks both decide alike."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    rest = path[len(root) :]
    return rest if rest == "" or rest.startswith("/") else path


class DirectEndpoints:
    """`endpoints`: (method, path) to endpoint, matched on the exact path the router
    matches (the ASGI path without the root path). `handlers`: the application's exception
    handlers."""

    def __init__(
        self,
        app: ASGIApp,
        endpoints: Mapping[tuple[str, str], Endpoint],
        handlers: Mapping[Any, Handler],
    ) -> None:
        self.app = app
        self.endpoints = dict(endpoints)
        # Class keys only: status-code handlers answer HTTPExceptions, which these do not raise.
        self.handlers = {key: value for key, value in handlers.items() if isinstance(key, type)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = None
        if scope["type"] == "http":
            # The path the router would match (without a root path), so both decide alike.
            endpoint = self.endpoints.get((scope["method"], route_path(scope)))
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Handler | None:
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return handler
        return None
