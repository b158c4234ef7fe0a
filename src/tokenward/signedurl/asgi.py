"""Verify-side ASGI app: serve a file or proxy an origin only for a validly signed link.

    app = SignedContent(Verifier(keys), DirectoryBackend("/srv/media"))
    app = SignedContent(Verifier(keys), OriginBackend("https://origin.internal", client))

A pure ASGI callable (no middleware stack) so refusals are rendered here, as JSON with the
reason and `Cache-Control: no-store`; the `tw_` parameters never reach the origin.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx
from starlette.responses import FileResponse

from tokenward.signedurl.canonical import PREFIX, canonical_path
from tokenward.signedurl.errors import Reason
from tokenward.signedurl.sources import file_under
from tokenward.signedurl.verify import Verifier

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

# Hop-by-hop headers (RFC 9110 §7.6.1) are not copied; the body is passed through raw, so
# Content-Length and Content-Encoding stay true.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_FORWARDED_REQUEST_HEADERS = frozenset(
    {"range", "if-range", "if-none-match", "if-modified-since", "accept-encoding"}
)


class Backend(Protocol):
    async def respond(
        self, scope: Scope, receive: Receive, send: Send, path: str, query: str
    ) -> None:
        """Answer for canonical `path` with `query` (signing parameters removed)."""


def request_path(scope: Scope) -> str:
    """The path as the client sent it: `raw_path` (some servers add the query; cut it)."""
    raw = scope.get("raw_path")
    if not raw:
        return str(scope["path"])
    path = bytes(raw).split(b"?", 1)[0].decode("utf-8", "surrogateescape")
    root = str(scope.get("root_path", ""))
    # Behind a proxy that strips a prefix the raw path lacks it; links were signed with it.
    return path if not root or path.startswith(root) else root + path


def peer_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def unsigned_query(query: str) -> str:
    """`query` without `tw_` parameters, as the origin should see it."""
    kept = [
        piece
        for piece in query.split("&")
        if piece and not piece.lower().replace("%5f", "_").startswith(PREFIX)
    ]
    return "&".join(kept)


async def send_json(send: Send, status: int, payload: dict[str, str]) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_refusal(send: Send, reason: Reason) -> None:
    # Reasons are fixed words; the link itself (and its signature) is never echoed.
    await send_json(send, reason.status, {"error": "signed_url_refused", "reason": reason.value})


class SignedContent:
    """GET and HEAD only; every request must carry a link signed by the verifier's key set."""

    def __init__(
        self,
        verifier: Verifier,
        backend: Backend,
        *,
        client_ip: Callable[[Scope], str | None] = peer_address,
    ) -> None:
        self.verifier = verifier
        self.backend = backend
        self._client_ip = client_ip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # a websocket handshake left unanswered is refused by the server
        if scope["method"] not in ("GET", "HEAD"):
            await send_json(send, 405, {"error": "method_not_allowed"})
            return
        path = request_path(scope)
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        verdict = self.verifier.verify_request(path, query, self._client_ip(scope))
        if verdict.reason is not None:
            await send_refusal(send, verdict.reason)
            return
        await self.backend.respond(
            scope, receive, send, canonical_path(path), unsigned_query(query)
        )


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class DirectoryBackend:
    """Files under `root`; `strip_prefix` is the URL path the directory is published at."""

    def __init__(self, root: str | Path, *, strip_prefix: str = "") -> None:
        self.root = Path(root).resolve(strict=True)
        self._strip = strip_prefix.rstrip("/")

    async def respond(
        self, scope: Scope, receive: Receive, send: Send, path: str, query: str
    ) -> None:
        if self._strip and not path.startswith(self._strip + "/"):
            await send_json(send, 404, {"error": "not_found"})
            return
        file = file_under(self.root, path[len(self._strip) :])
        if file is None:
            await send_json(send, 404, {"error": "not_found"})
            return
        # FileResponse answers HEAD and Range requests, which players use for seeking.
        await FileResponse(file)(scope, receive, send)


class OriginBackend:
    """Streams `base_url` + path from an origin with the given client (no redirects)."""

    def __init__(self, base_url: str, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client

    async def respond(
        self, scope: Scope, receive: Receive, send: Send, path: str, query: str
    ) -> None:
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name.decode("latin-1") in _FORWARDED_REQUEST_HEADERS
        ]
        url = self.base_url + path + ("?" + query if query else "")
        request = self._client.build_request(scope["method"], url, headers=headers)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError:
            await send_json(send, 502, {"error": "origin_unreachable"})
            return
        try:
            kept = [
                (name, value)
                for name, value in response.headers.raw
                if name.lower() not in _HOP_BY_HOP
            ]
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": kept}
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except httpx.HTTPError:
            # Headers are out already: all we can do is end the body early.
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()
