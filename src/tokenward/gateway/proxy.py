"""Forward one admitted request to its route's upstream and stream the answer back.

Bodies stream both ways in chunks of at most 64 KiB; neither is held whole in memory. Failures
before the response starts become `UpstreamError` (the app renders 502/504 JSON); a failure
after it started can only cut the response short, so the connection to the client is closed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from starlette.types import Message, Receive, Scope, Send

from tokenward.gateway.deadline import Deadline
from tokenward.gateway.headers import Incoming, response_headers
from tokenward.gateway.model import Route, Upstream
from tokenward.gateway.paths import strip_segments
from tokenward.gateway.upstream import (
    BadUpstream,
    ConnectFailed,
    Connection,
    Pool,
    ResponseHead,
    StaleConnection,
    TlsRefused,
    UpstreamError,
    UpstreamTimeout,
    body_chunks,
    read_head,
)
from tokenward.gateway.upstream_tls import CLOSED_AFTER_HANDSHAKE
from tokenward.gateway.weighted import SmoothWeighted

Headers = list[tuple[bytes, bytes]]
SMALL_BODY = 64 * 1024


class ClientGone(Exception):
    """The client disconnected before its request body was read: nothing to answer."""


class Balancer:
    """Round robin over a route's upstreams; one counter per route, shared across reloads of
    an unchanged route list would not matter, so it lives with the compiled config."""

    def __init__(self, upstreams: tuple[Upstream, ...]) -> None:
        self._upstreams = upstreams
        self._next: Callable[[], int] = itertools.count().__next__

    def order(self) -> list[Upstream]:
        ups = self._upstreams
        if len(ups) == 1:
            return [ups[0]]
        start = self._next() % len(ups)
        return [*ups[start:], *ups[:start]]


class WeightedBalancer(Balancer):
    """Smooth weighted round robin (gateway/weighted.py) for routes with `{url:, weight:}`
    entries; the picked upstream first, then the others in list order after it (failover)."""

    def __init__(self, upstreams: tuple[Upstream, ...], weights: tuple[int, ...]) -> None:
        super().__init__(upstreams)
        self._picker = SmoothWeighted(weights)

    def order(self) -> list[Upstream]:
        ups = self._upstreams
        start = self._picker.pick()
        return [*ups[start:], *ups[:start]]


def balancer(route: Route) -> Balancer:
    """The route's balancer: plain round robin unless its upstreams carry weights."""
    if route.weights is None:
        return Balancer(route.upstreams)
    return WeightedBalancer(route.upstreams, route.weights)


def request_target(scope: Scope, route: Route, upstream: Upstream) -> bytes:
    # `raw_path` is the resolved path the route was chosen on (gateway/paths.py, set by the app).
    path: bytes = scope["raw_path"]
    if route.strip_prefix:
        path = strip_segments(path, route.prefix)
    target = upstream.base_path.encode("utf-8") + path
    query: bytes = scope.get("query_string", b"")
    return target + b"?" + query if query else target


class Proxy:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._event_loop: asyncio.AbstractEventLoop | None = None

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = self._event_loop
        if loop is None or loop.is_closed():
            loop = self._event_loop = asyncio.get_running_loop()
        return loop

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        balancer: Balancer,
        incoming: Incoming,
        added: Headers,
        response_extra: Headers,
    ) -> int:
        """Returns the status sent to the client. Raises UpstreamError before the response
        starts, ClientGone if the client left while we read its body."""
        method: str = scope["method"]
        framing = _request_framing(incoming)
        last_error: UpstreamError = ConnectFailed("no upstream")
        for upstream in balancer.order():
            head = _head(method, request_target(scope, route, upstream), upstream, incoming)
            head.extend(added)
            head.extend(framing)
            try:
                connection, response = await self._exchange(
                    upstream, route, method, head, receive, incoming
                )
            except ConnectFailed as exc:
                last_error = exc  # nothing was sent: the next upstream may take it
                continue
            return await self._respond(upstream, route, connection, response, send, response_extra)
        raise last_error

    async def _exchange(
        self,
        upstream: Upstream,
        route: Route,
        method: str,
        head: Headers,
        receive: Receive,
        incoming: Incoming,
    ) -> tuple[Connection, ResponseHead]:
        data = _serialize(head)
        for _attempt in range(2):
            connection, reused = await self.pool.acquire(upstream, route.connect_timeout)
            try:
                connection.writer.write(data)
                if incoming.has_body:
                    await _send_body(connection, receive, incoming, route.read_timeout)
                async with Deadline(self._loop(), route.read_timeout):
                    response = await read_head(connection.reader, method)
                    if response.framing == "length" and response.length <= SMALL_BODY:
                        # Small bodies come whole, under the same deadline: one message to
                        # the server instead of a stream, and one timer instead of two.
                        response.body = await _read_small(connection.reader, response.length)
            except StaleConnection:
                connection.close()
                # A reused connection the upstream had closed: retry once, unless a body was
                # already consumed from the client and cannot be sent again.
                if reused and not incoming.has_body:
                    continue
                if upstream.tls is not None and not reused:
                    # TLS 1.3 reports a refused client certificate only after the handshake,
                    # and asyncio turns the alert into a bare close: say what it likely was.
                    raise TlsRefused(CLOSED_AFTER_HANDSHAKE) from None
                raise BadGateway() from None
            except TimeoutError:
                connection.close()
                raise UpstreamTimeout("the upstream did not answer in time") from None
            except BaseException:
                connection.close()
                raise
            return connection, response
        raise BadGateway()

    async def _respond(
        self,
        upstream: Upstream,
        route: Route,
        connection: Connection,
        response: ResponseHead,
        send: Send,
        extra: Headers,
    ) -> int:
        headers = response_headers(response.headers, response.framing == "chunked", response.listed)
        headers.extend(extra)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        if response.body is not None:
            await send({"type": "http.response.body", "body": response.body})
            self._finish(upstream, connection, response)
            return response.status
        try:
            async for chunk in body_chunks(connection.reader, response, route.read_timeout):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamError:
            connection.close()
            return response.status  # returning unfinished makes the server drop the client
        except BaseException:
            connection.close()
            raise
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        self._finish(upstream, connection, response)
        return response.status

    def _finish(self, upstream: Upstream, connection: Connection, response: ResponseHead) -> None:
        if response.keep_alive:
            self.pool.release(upstream, connection)
        else:
            connection.close()


class BadGateway(UpstreamError):
    reason = "upstream_closed"

    def __init__(self) -> None:
        super().__init__("the upstream closed the connection without answering")


async def _read_small(reader: asyncio.StreamReader, length: int) -> bytes:
    try:
        return await reader.readexactly(length)
    except (asyncio.IncompleteReadError, OSError):
        raise BadUpstream("the upstream closed the connection mid-body") from None


def _head(method: str, target: bytes, upstream: Upstream, incoming: Incoming) -> Headers:
    # The first pair carries the request line pieces; `_serialize` knows.
    head: Headers = [(b"", method.encode("ascii")), (b"", target), upstream.host_field]
    head += incoming.headers
    return head


def _request_framing(incoming: Incoming) -> Headers:
    if incoming.content_length is not None:
        return [(b"content-length", incoming.content_length)]
    if incoming.has_body:
        return [(b"transfer-encoding", b"chunked")]
    return []


def _serialize(head: Headers) -> bytes:
    method, target = head[0][1], head[1][1]
    lines = [method + b" " + target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in head[2:]]  # a list: no generator
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


async def _send_body(
    connection: Connection, receive: Receive, incoming: Incoming, write_timeout: float
) -> None:
    chunked = incoming.content_length is None
    writer = connection.writer
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        body: bytes = message.get("body", b"")
        if body:
            writer.write(b"%x\r\n%b\r\n" % (len(body), body) if chunked else body)
            try:
                async with asyncio.timeout(write_timeout):
                    await writer.drain()
            except OSError:
                raise StaleConnection("the upstream stopped reading the request") from None
        if not message.get("more_body", False):
            break
    if chunked:
        writer.write(b"0\r\n\r\n")
