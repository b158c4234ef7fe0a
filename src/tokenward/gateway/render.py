"""Small pieces of the request path: rate-limit keys, forwarding fields, JSON refusals."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import orjson
from starlette.types import Receive, Send

from tokenward.gateway.compiled import Compiled
from tokenward.gateway.headers import Incoming
from tokenward.guard.errors import BearerError, challenge
from tokenward.tokens.claims import AccessToken

Headers = list[tuple[bytes, bytes]]
REALM = "tokenward-gateway"


def rate_key(kind: str, token: AccessToken | None, ip: str) -> str:
    if token is None or kind == "ip":
        return "ip:" + ip  # open routes have no token: their limits fall back to the address
    if kind == "subject":
        return "sub:" + token.sub
    if kind == "client":
        return "client:" + token.client_id
    return "jti:" + token.jti


def forwarding(scheme: str, incoming: Incoming, peer: str | None, compiled: Compiled) -> Headers:
    chain = incoming.forwarded_for if compiled.peer_trusted(peer) else []
    hop = (peer or "unknown").encode("latin-1")
    forwarded_for = b", ".join([*chain, hop])
    headers = [
        (b"x-forwarded-for", forwarded_for),
        (b"x-forwarded-proto", scheme.encode("latin-1")),
    ]
    if incoming.host is not None:
        headers.append((b"x-forwarded-host", incoming.host))
    return headers


async def send_json(send: Send, status: int, body: dict[str, str], headers: Headers) -> None:
    data = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"cache-control", b"no-store"),
                (b"content-length", str(len(data)).encode("ascii")),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def send_challenge(send: Send, error: BearerError, extra: Headers) -> int:
    rendered = challenge(error, realm=REALM)
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in rendered.headers]
    headers.append((b"content-length", str(len(rendered.body)).encode("ascii")))
    headers.extend(extra)
    await send({"type": "http.response.start", "status": rendered.status, "headers": headers})
    await send({"type": "http.response.body", "body": rendered.body})
    return rendered.status


async def send_empty(send: Send, status: int, headers: Headers) -> None:
    """A body-less answer of the gateway's own (redirects, 204s): never cached."""
    extra = [(b"cache-control", b"no-store"), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra]})
    await send({"type": "http.response.body", "body": b""})


async def lifespan(
    receive: Receive,
    send: Send,
    on_start: Callable[[], None] | None,
    on_stop: list[Callable[[], object]],
) -> None:
    """The ASGI lifespan protocol: start the audit flusher, and on shutdown close the pool and
    flush the audit (stop callbacks may be sync or async)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if on_start is not None:
                on_start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for stop in on_stop:
                result = stop()
                if inspect.isawaitable(result):
                    await result
            await send({"type": "lifespan.shutdown.complete"})
            return
