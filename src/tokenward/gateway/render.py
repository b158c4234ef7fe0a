"""Small pieces of the request path: rate-limit keys, forwarding fields, JSON refusals."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import orjson
from starlette.types import Receive, Send

from tokenward.core.claims import AccessToken
from tokenward.core.errors import BearerError
from tokenward.gateway.compiled import Compiled
from tokenward.gateway.headers import Incoming
from tokenward.gateway.startup import StartupError
from tokenward.guard.challenge import challenge

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


# (status, headers, body): an answer of the gateway's own, built before it is sent, so the
# same refusal can go to a client or, reshaped, to a proxy asking for a decision (authz.py).
Answer = tuple[int, Headers, bytes]


def json_answer(status: int, body: dict[str, str], headers: Headers) -> Answer:
    data = orjson.dumps(body)
    head = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(data)).encode("ascii")),
        *headers,
    ]
    return status, head, data


def challenge_answer(error: BearerError, extra: Headers, dpop_algs: tuple[str, ...] = ()) -> Answer:
    """RFC 6750 §3 (Bearer); with `dpop_algs`, a dpop route's challenge: the DPoP scheme with
    its algorithms (RFC 9449 §7.1), and `DPoP-Nonce` for `use_dpop_nonce`."""
    if dpop_algs:
        rendered = challenge(error, realm=REALM, scheme="DPoP", dpop_algs=dpop_algs)
    else:
        rendered = challenge(error, realm=REALM)
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in rendered.headers]
    headers.append((b"content-length", str(len(rendered.body)).encode("ascii")))
    headers.extend(extra)
    return rendered.status, headers, rendered.body


async def send_answer(send: Send, answer: Answer) -> int:
    status, headers, body = answer
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status


async def send_json(send: Send, status: int, body: dict[str, str], headers: Headers) -> None:
    await send_answer(send, json_answer(status, body, headers))


async def send_challenge(
    send: Send, error: BearerError, extra: Headers, dpop_algs: tuple[str, ...] = ()
) -> int:
    return await send_answer(send, challenge_answer(error, extra, dpop_algs))


async def send_empty(send: Send, status: int, headers: Headers) -> None:
    """A body-less answer of the gateway's own (redirects, 204s): never cached."""
    extra = [(b"cache-control", b"no-store"), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra]})
    await send({"type": "http.response.body", "body": b""})


async def lifespan(
    receive: Receive,
    send: Send,
    on_start: list[Callable[[], object]],
    on_stop: list[Callable[[], object]],
) -> None:
    """The ASGI lifespan protocol: start the audit flusher and background work (the revocation
    feed), and on shutdown stop them, close the pool and flush the audit. Callbacks may be sync
    or async; a start that fails reports `lifespan.startup.failed` (the server exits)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                for start in on_start:
                    await _call(start)
            except Exception as exc:  # noqa: BLE001 - the server must hear why it cannot start
                await send({"type": "lifespan.startup.failed", "message": _startup_error(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for stop in on_stop:
                await _call(stop)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _call(callback: Callable[[], object]) -> None:
    result = callback()
    if inspect.isawaitable(result):
        await result


def _startup_error(exc: Exception) -> str:
    if isinstance(exc, StartupError):
        return str(exc)  # written by us: names the setting and the fix, never a secret
    # The type only: a driver's message can hold a connection URL with its password.
    return f"the gateway could not start: {type(exc).__name__}"
