"""WebSocket proxying: an admitted upgrade is relayed to the route's upstream, message by message.

The upgrade is decided like any request (gateway/app.py `_decide`: token, scopes, binding,
policies, rate limit, audit) before the upstream hears of it. Once open, the connection lives
only as long as the token would still be admitted: it is closed with 1008 (policy violation,
RFC 6455 §7.4.1) at the token's `exp`, or when the revocation mirror learns of its revocation
(looked at every `CHECK_INTERVAL` seconds, a comparison of the mirror's generation when nothing
changed), and with 1013 (try again later) when the mirror is stale, as HTTP requests then get
503. The upstream side uses the `websockets` library (its asyncio client), the client side is
uvicorn's WebSocket protocol (also `websockets`, sans-I/O).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any

import structlog
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import CloseCode
from websockets.typing import Subprotocol

from tokenward.core.claims import AccessToken
from tokenward.core.lifecycle import cancel_and_wait
from tokenward.core.revocation_mirror import RevocationMirror
from tokenward.gateway.audit import AuditRecord
from tokenward.gateway.compiled import Compiled
from tokenward.gateway.model import Route, Upstream
from tokenward.gateway.paths import strip_segments
from tokenward.gateway.policy import Denied
from tokenward.gateway.upstream import ConnectFailed, TlsFailed, UpstreamError, UpstreamTimeout
from tokenward.gateway.upstream_tls import tls_failure

log = structlog.get_logger(__name__)
Headers = list[tuple[bytes, bytes]]
CHECK_INTERVAL = 1.0  # seconds between looks at the revocation mirror: the closure bound
EXPIRED = "token_expired"
REVOKED = "token_revoked"
STALE = "revocations_unavailable"
# Set by the WebSocket handshake itself (ours to the upstream), never copied from the client.
HANDSHAKE = (b"sec-websocket-", b"host", b"upgrade", b"connection")
# Close codes that may not be sent in a close frame (RFC 6455 §7.4.1): replaced by 1011/1000.
UNSENDABLE = frozenset({1005, 1006, 1015})


def as_http(scope: Scope) -> Scope:
    """The upgrade request as the HTTP request it is (RFC 6455 §4.1: a GET), so it is decided
    exactly like one: DPoP's htm and htu, require_tls and the rest read the http(s) scheme."""
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    return {**scope, "type": "http", "method": "GET", "scheme": scheme}


def check_websocket(compiled: Compiled, path: str, record: AuditRecord) -> None:
    """Refuse an upgrade on a route without `websocket:` before any token is looked at."""
    route = compiled.routes.match(path, "GET")
    if route.websocket is None:
        record.route = route.name
        raise Denied(403, "websocket_not_allowed", "this route does not accept WebSocket upgrades")


async def send_upgrade_refusal(
    scope: Scope, send: Send, answer: tuple[int, Headers, bytes]
) -> None:
    """The refusal as an HTTP answer to the upgrade (the ASGI websocket.http.response
    extension, which uvicorn supports): a client sees 401 with its challenge and the JSON
    error, as over HTTP. A server without the extension gets a close (it answers 403)."""
    status, headers, body = answer
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})
        return
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


class Upgraded:
    """One relayed WebSocket: the client's side (ASGI), the upstream's, and the token's watch."""

    def __init__(
        self,
        receive: Receive,
        send: Send,
        upstream: ClientConnection,
        route_limit: int,
        watch: Callable[[], tuple[int, str] | None],
        next_look: Callable[[], float],
    ) -> None:
        self._receive = receive
        self._send = send
        self._upstream = upstream
        self._limit = route_limit
        self._watch = watch
        self._next_look = next_look
        self.closed_by = ""  # why it ended, for the log: client | upstream | a watch reason

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self._from_client()),
            asyncio.create_task(self._from_upstream()),
            asyncio.create_task(self._watching()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                await cancel_and_wait(task)
            with contextlib.suppress(Exception):
                await self._upstream.close()

    async def _from_client(self) -> None:
        upstream, limit = self._upstream, self._limit
        while True:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self.closed_by = "client"
                code = message.get("code", 1000)
                await _close_upstream(upstream, code if code not in UNSENDABLE else 1000)
                return
            if kind != "websocket.receive":
                continue
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            # A text's UTF-8 size is 1 to 4 bytes a character: encoded only when it may matter.
            size = len(data)
            if isinstance(data, str) and size * 4 > limit:
                size = len(data.encode("utf-8"))
            if size > limit:
                self.closed_by = "client_message_too_big"
                await self._close_client(CloseCode.MESSAGE_TOO_BIG, "message too big")
                await _close_upstream(upstream, CloseCode.GOING_AWAY)
                return
            try:
                await upstream.send(data)
            except ConnectionClosed:
                return  # `_from_upstream` relays the upstream's close

    async def _from_upstream(self) -> None:
        upstream = self._upstream
        try:
            async for data in upstream:
                if isinstance(data, str):
                    await self._send({"type": "websocket.send", "text": data})
                else:
                    await self._send({"type": "websocket.send", "bytes": data})
        except ConnectionClosed:
            pass
        self.closed_by = self.closed_by or "upstream"
        code = upstream.close_code
        if code is None or code in UNSENDABLE:
            code = CloseCode.INTERNAL_ERROR if code == 1006 else CloseCode.NORMAL_CLOSURE
        await self._close_client(code, upstream.close_reason or "")

    async def _watching(self) -> None:
        while True:
            ended = self._watch()
            if ended is not None:
                code, reason = ended
                self.closed_by = reason
                await self._close_client(code, reason)
                await _close_upstream(self._upstream, CloseCode.GOING_AWAY)
                return
            await asyncio.sleep(self._next_look())

    async def _close_client(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):  # the client may have gone already
            await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})


async def _close_upstream(upstream: ClientConnection, code: int) -> None:
    with contextlib.suppress(Exception):
        await upstream.close(code)


class TokenWatch:
    """Whether an admitted token still would be: its expiry, and the revocation mirror's word.

    Cheap on purpose: each look is a clock read and, unless the mirror's generation moved, an
    integer comparison; `next_look` sleeps until the next mirror look or the expiry, whichever
    comes first, so expiry closes on time and revocations within `CHECK_INTERVAL`."""

    def __init__(
        self,
        token: AccessToken | None,
        mirror: RevocationMirror | None,
        clock: Callable[[], float],
        interval: float = CHECK_INTERVAL,
    ) -> None:
        self._token = token
        self._mirror = mirror
        self._clock = clock
        self._interval = interval
        self._generation = -1

    def __call__(self) -> tuple[int, str] | None:
        token = self._token
        if token is None:
            return None  # an open route: nothing expires
        now = self._clock()
        if now >= token.exp:
            return CloseCode.POLICY_VIOLATION, EXPIRED
        mirror = self._mirror
        if mirror is None:
            return None
        if now > mirror.fresh_until:
            return CloseCode.TRY_AGAIN_LATER, STALE
        if mirror.generation != self._generation:
            self._generation = mirror.generation
            if mirror.reason(token.jti, token.sub, token.sid, token.client_id, token.iat):
                return CloseCode.POLICY_VIOLATION, REVOKED
        return None

    def next_look(self) -> float:
        token = self._token
        if token is None:
            return 3600.0
        return max(0.0, min(self._interval, token.exp - self._clock()))


async def open_upstream(
    scope: Scope, route: Route, upstreams: list[Upstream], headers: Headers
) -> ClientConnection:
    """The WebSocket handshake with the first upstream that takes it (ws:// for http://
    upstreams, wss:// with the route's upstream TLS settings for https:// ones). Raises the
    UpstreamError the client's 502/504 is made from."""
    settings = route.websocket
    limit = settings.max_message_bytes if settings is not None else 0
    path: bytes = scope["raw_path"]
    query: bytes = scope.get("query_string", b"")
    subprotocols: list[str] = list(scope.get("subprotocols", ()))
    last: UpstreamError = ConnectFailed("no upstream")
    for upstream in upstreams:
        target = _target(upstream, route, path, query)
        tls = upstream.tls
        options: dict[str, Any] = {}
        if tls is not None:
            options = {"ssl": tls.context, "server_hostname": tls.server_name or upstream.host}
        try:
            return await connect(
                target,
                additional_headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
                subprotocols=[Subprotocol(name) for name in subprotocols] or None,
                max_size=limit,
                open_timeout=route.connect_timeout,
                close_timeout=route.connect_timeout,
                ping_interval=20,
                compression=None,  # relayed as is: no inflating what a client could bomb
                user_agent_header=None,
                proxy=None,
                **options,
            )
        except TimeoutError:
            last = UpstreamTimeout("the upstream did not complete the WebSocket handshake in time")
        except InvalidStatus as exc:
            last = _Refused(f"the upstream answered the upgrade with {exc.response.status_code}")
        except InvalidHandshake:
            last = _Refused("the upstream did not complete the WebSocket handshake")
        except ssl.SSLError as exc:
            last = TlsFailed(tls_failure(exc))
        except OSError:
            last = ConnectFailed("the upstream refused or dropped the connection")
    raise last


class _Refused(UpstreamError):
    reason = "upstream_refused_upgrade"


def _target(upstream: Upstream, route: Route, path: bytes, query: bytes) -> str:
    if route.strip_prefix:
        path = strip_segments(path, route.prefix)
    scheme = "wss" if upstream.scheme == "https" else "ws"
    host = f"[{upstream.host}]" if ":" in upstream.host else upstream.host
    target = f"{scheme}://{host}:{upstream.port}{upstream.base_path}{path.decode('latin-1')}"
    return target + "?" + query.decode("latin-1") if query else target


def upstream_headers(added: Headers, incoming: Headers) -> Headers:
    """What the upstream's handshake carries besides its own: the client's end-to-end headers
    (less the client's handshake fields) and the gateway's (identity, forwarding)."""
    kept = [(n, v) for n, v in incoming if not n.startswith(HANDSHAKE)]
    return [*kept, *added]
