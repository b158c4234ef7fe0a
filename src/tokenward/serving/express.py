"""The express lane: complete, plain requests to a few busy routes served by a bare httptools
protocol, straight to the same ASGI app; everything else by uvicorn's protocol, as before.

uvicorn's httptools protocol runs, for every request, its parser callbacks, builds a
`RequestResponseCycle` with an `asyncio.Event`, checks and writes the head and the body in two
`send` calls (gathered by serving/coalescing.py), and arms a keep-alive timer per answer; our
guard (serving/protocol.py) counts and times every head on top. Measured on this machine with
bench/floor_app.py's introspection under wrk (8 connections), uvicorn spent about 40 µs of CPU
per request where a bare httptools protocol calling the same ASGI callable spent 23 µs
(docs/performance.md, "The express lane").

The lane takes only what needs none of that machinery: one whole request, `POST` to one of
`Express.routes` (the exact raw path: no query, nothing escaped), HTTP/1.x without an upgrade,
`Expect` or `Transfer-Encoding`, one `Content-Length` within `Express.max_body`, a head within
the guard's size and field limits, and uvicorn's concurrency limit not reached. Its head must
come whole in one read; its body may follow in later reads (httpx, through h11, writes a POST's
head and body separately) for at most `BODY_WAIT`. Anything else -- a head in pieces, a body
later than that, two pipelined requests in one read, another route, a parser error -- is
handed, with every byte of it, to uvicorn's guarded protocol, which keeps the connection from
then on (as uvicorn hands a WebSocket upgrade to its WebSocket protocol). So a slow or odd
client meets the protections it met before (head and body deadlines, 400/408/414/431, 503),
a late body `BODY_WAIT` later.

What the lane keeps of uvicorn's: the ASGI scope (the same keys and values), header names
lowered and trailing whitespace cut, the answer's header names and values checked against
uvicorn's patterns, its default headers (`date`), keep-alive and `connection: close`,
requests counted for graceful shutdown (a connection told to shut down closes after the answer
under way), the connection cap, the 500 when the app fails before answering. What differs: the
app receives the body in one message; head and body go out in one write; an answer without a
`content-length` gets one (its body is gathered) instead of chunked encoding; a failure is
logged by its type, not with a traceback (whose text may quote the request); a connection idle
past uvicorn's keep-alive timeout (or, before its first request, past the head timeout) is
closed by one timer per connection, not one per answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import httptools
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE
from uvicorn.protocols.utils import get_local_addr, get_remote_addr

from tokenward.serving.coalescing import CoalescingTransport
from tokenward.serving.limits import HeadLimits

log = logging.getLogger("uvicorn.error")

Message = dict[str, Any]
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
ProtocolClass = type[asyncio.Protocol]
# How long the lane waits for the rest of a body whose head came whole (then uvicorn waits).
BODY_WAIT = 0.25

SERVER_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error"
)


class _Signal:
    """What uvicorn's protocol and our guard call `message_event.set()` on (a disconnect, a
    stalled body given up): wakes a `receive()` waiting for the end of the request."""

    __slots__ = ("waiter",)

    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class ExpressCycle:
    """One request in the express lane, with the attributes of uvicorn's cycle that its protocol and
    our guard read (`disconnected`, `keep_alive`, `response_started`, `response_complete`,
    `waiting_for_100_continue`, `message_event`)."""

    __slots__ = (
        "_default_headers",
        "_flow",
        "_head",
        "_length",
        "_on_response",
        "_parts",
        "_received",
        "_transport",
        "body",
        "disconnected",
        "keep_alive",
        "message_event",
        "response_complete",
        "response_started",
        "scope",
    )

    waiting_for_100_continue = False  # never in the express lane

    def __init__(
        self,
        scope: dict[str, Any],
        transport: asyncio.Transport,
        flow: Any,
        default_headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        on_response: Callable[[], None],
    ) -> None:
        self.scope = scope
        self.body: list[bytes] = []
        self.disconnected = False
        self.keep_alive = keep_alive
        self.message_event = _Signal()
        self.response_started = False
        self.response_complete = False
        self._transport = transport
        self._flow = flow
        self._default_headers = default_headers
        self._on_response = on_response
        self._received = False
        self._head: list[bytes] = []
        self._length: int | None = None  # the answer's content-length, once it says one
        self._parts: list[bytes] = []

    async def run(self, app: App) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:  # as uvicorn: the connection gets a 500
            log.error("Exception in ASGI application: %s", type(exc).__name__)  # noqa: TRY400
            self._fail()
            if not isinstance(exc, Exception):
                raise
            return
        if not self.response_complete and not self.disconnected:
            log.error("ASGI callable returned without completing response.")
            self._fail()

    def _fail(self) -> None:
        if self.disconnected or self.response_complete:
            return
        self.response_complete = True
        transport = self._transport
        if not self.response_started and not transport.is_closing():
            transport.write(SERVER_ERROR)
        transport.close()

    async def receive(self) -> Message:
        if not self._received:
            self._received = True
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            self.body = []
            return {"type": "http.request", "body": body, "more_body": False}
        if not self.disconnected and not self.response_complete:
            # As uvicorn: after the body, receive() waits for the client to go (or the answer
            # to end).
            waiter = self.message_event.waiter = asyncio.get_running_loop().create_future()
            await waiter
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected 'http.response.start', but got '{kind}'.")
            self._start(message["status"], message.get("headers", ()))
            # Only now: the head is kept until the body comes, so an answer refused above can
            # still become a 500.
            self.response_started = True
            return
        if self.response_complete:
            return
        if kind != "http.response.body":
            raise RuntimeError(f"Expected 'http.response.body', but got '{kind}'.")
        body = message.get("body", b"")
        if body:
            self._parts.append(body)
        if not message.get("more_body", False):
            await self._finish()

    def _start(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        head = [STATUS_LINE[status]]
        close = False
        names: list[bytes] = []
        values: list[bytes] = []
        for name, value in (*self._default_headers, *headers):
            lowered = name.lower()
            if lowered == b"content-length":
                if self._length is not None:
                    raise RuntimeError("Duplicate content-length.")
                self._length = int(value)
            elif lowered == b"transfer-encoding":
                continue  # the whole body is sent with its length: no chunked encoding here
            elif lowered == b"connection" and b"close" in value.lower():
                self.keep_alive = False
                close = True
            names.append(lowered)
            values.append(value)
            head += (lowered, b": ", value, b"\r\n")
        # uvicorn's patterns are character classes: one search over the names (or values) put
        # together finds what a search of each would.
        if HEADER_RE.search(b"".join(names)):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(b"".join(values)):
            raise RuntimeError("Invalid HTTP header value.")
        if not self.keep_alive and not close:
            head.append(b"connection: close\r\n")
        self._head = head

    async def _finish(self) -> None:
        parts = self._parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        head = self._head
        if self._length is None:
            head.append(b"content-length: %d\r\n" % len(body))
        elif self._length != len(body):
            raise RuntimeError("Response content length differs from Content-Length")
        head += (b"\r\n", body)
        if self._flow.write_paused and not self.disconnected:
            await self._flow.drain()  # the client is slow to read: as uvicorn, wait for it
        if self.disconnected:
            return
        self.response_complete = True
        transport = self._transport
        transport.write(b"".join(head))
        if not self.keep_alive:
            transport.close()
        self._on_response()


@dataclass(frozen=True)
class Express:
    """`routes`: the (method, path) pairs served in the lane, matched on the raw request target
    exactly; `max_body`: the largest body taken there (a longer one goes to uvicorn, where the
    app refuses it)."""

    routes: frozenset[tuple[str, str]]
    max_body: int

    def raw(self) -> frozenset[tuple[bytes, bytes]]:
        return frozenset((m.encode("ascii"), p.encode("ascii")) for m, p in self.routes)


class _Request:
    """What the parser callbacks gathered from one read."""

    __slots__ = (
        "begun",
        "body",
        "done",
        "fields",
        "headed",
        "headers",
        "keep_alive",
        "length",
        "method",
        "plain",
        "url",
        "version",
    )

    def __init__(self) -> None:
        self.begun = 0  # messages begun in this read
        self.done = 0  # and completed
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.fields = 0
        self.body: list[bytes] = []
        self.method = b""
        self.version = ""
        self.keep_alive = False
        self.length = 0
        self.plain = True  # no Expect, Transfer-Encoding or upgrade
        self.headed = False  # the head is complete


class ExpressProtocol(asyncio.Protocol):
    """Made by `express_protocol`; uvicorn instantiates it per connection as its own."""

    # Set on each class `express_protocol` makes.
    fallback: ProtocolClass
    routes: frozenset[tuple[bytes, bytes]]
    max_body: int
    max_head: int
    max_fields: int
    head_timeout: float
    max_connections: int  # the guard's connection cap

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app: App = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.keep_alive_timeout: float = config.timeout_keep_alive
        self.limit = config.limit_concurrency
        self.root_path: str = config.root_path
        self.transport: asyncio.Transport | None = None
        self.writer: asyncio.Transport | None = None
        self.flow: FlowControl | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.request = _Request()
        self.cycle: ExpressCycle | None = None
        self.pending = b""  # what came while an answer was under way (pipelined)
        # A lane request whose head came whole and whose body is still coming: its bytes so
        # far, and when to stop waiting and hand them to uvicorn.
        self.waiting: bytes | None = None
        self.wait_until = 0.0
        self.idle_since = 0.0
        self.idle_limit = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None

    # The transport's calls.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport = transport
        if len(self.server_state.connections) >= self.max_connections:
            self._hand_off(b"")  # the guard closes it, and says so in the log
            return
        from tokenward.serving.protocol import no_delay  # noqa: PLC0415 - protocol imports us

        no_delay(transport)
        self.server_state.connections.add(self)
        self.flow = FlowControl(transport)
        # Answers leave at the end of the loop step, as uvicorn's do here (serving/coalescing.py):
        # written at once from each request's task, every answer woke the client sooner and the
        # loop took fewer requests per wake-up, which cost more than the lane saved (measured
        # under wrk: 172 against 156 µs of CPU per token; 143 with this).
        self.writer = cast(asyncio.Transport, CoalescingTransport(transport, self.loop))
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        # A connection that sends nothing is closed after the head timeout, as by the guard.
        self.idle_since = self.loop.time()
        self.idle_limit = self.head_timeout
        self._arm(self.idle_since + self.idle_limit)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if self.flow is not None:
            self.flow.resume_writing()

    def eof_received(self) -> None:
        return None  # as uvicorn: the transport closes

    def pause_writing(self) -> None:
        if self.flow is not None:
            self.flow.pause_writing()

    def resume_writing(self) -> None:
        if self.flow is not None:
            self.flow.resume_writing()

    def data_received(self, data: bytes) -> None:
        if self.cycle is not None:
            # Pipelined behind the answer under way: looked at once it is written.
            self.pending += data
            if len(self.pending) > self.max_head + self.max_body:
                transport = self.transport
                if transport is not None:
                    transport.pause_reading()
            return
        waiting = self.waiting
        if waiting is not None:
            self._feed(data, waiting + data)
            return
        self._serve(data)

    # uvicorn's server calls this on each connection at shutdown.
    def shutdown(self) -> None:
        waiting = self.waiting
        if waiting is not None:  # a request under way: uvicorn finishes it, then closes
            self.waiting = None
            protocol = self._hand_off(waiting)
            if protocol is not None:
                cast(Any, protocol).shutdown()
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            if self.writer is not None:
                self.writer.close()  # after the last answer, if it is still in the buffer
        else:
            cycle.keep_alive = False

    # The parser's callbacks.

    def on_message_begin(self) -> None:
        self.request.begun += 1

    def on_url(self, url: bytes) -> None:
        self.request.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.request
        name = name.lower()
        value = value.rstrip(b" \t")  # RFC 9110 §5.5, as uvicorn
        if name == b"content-length":
            if request.length:  # sent twice: uvicorn's (and the guard's) case, not ours
                request.plain = False
            request.length = int(value) if value.isdigit() and len(value) < 19 else -1
        elif name in (b"expect", b"transfer-encoding"):
            request.plain = False
        request.fields += 1
        request.headers.append((name, value))

    def on_headers_complete(self) -> None:
        request = self.request
        parser = self.parser
        request.method = parser.get_method()
        request.version = parser.get_http_version()
        request.keep_alive = request.version != "1.0" and parser.should_keep_alive()
        request.headed = True
        if parser.should_upgrade():
            request.plain = False

    def on_body(self, body: bytes) -> None:
        self.request.body.append(body)

    def on_message_complete(self) -> None:
        self.request.done += 1

    # The lane.

    def _serve(self, data: bytes) -> None:
        self.request = _Request()
        self._feed(data, data)

    def _feed(self, data: bytes, whole: bytes) -> None:
        """Parse `data`, the newest bytes of the request whose bytes so far are `whole`."""
        request = self.request
        self.waiting = None
        if len(whole) > self.max_head + self.max_body:
            self._hand_off(whole)
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._hand_off(whole)  # uvicorn answers it as it would have
            return
        if request.begun == 1 and request.done == 0 and self._head_fits(request, whole):
            # Head and body often come in two writes (httpx, h11): the body is waited for a
            # moment, then the request goes to uvicorn, whose body deadline starts then.
            self.waiting = whole
            if not self.wait_until:
                self.wait_until = self.loop.time() + BODY_WAIT
                self._arm(self.wait_until)
            return
        self.wait_until = 0.0
        if not self._takes(request, whole):
            self._hand_off(whole)
            return
        self._start(request)

    def _head_fits(self, request: _Request, whole: bytes) -> bool:
        """A whole head the lane serves: route, plainness and the guard's limits."""
        if not request.headed or not request.plain:
            return False
        if (request.method, request.url) not in self.routes:
            return False
        body = sum(map(len, request.body))
        if request.fields > self.max_fields or len(whole) - body > self.max_head:
            return False  # the guard answers 431
        return 0 <= request.length <= self.max_body and request.version in ("1.1", "1.0")

    def _takes(self, request: _Request, whole: bytes) -> bool:
        """Whether these bytes are one whole request the lane serves as uvicorn would."""
        if request.begun != 1 or request.done != 1 or not self._head_fits(request, whole):
            return False  # part of a request, or more than one, or one that needs uvicorn
        limit = self.limit
        tasks = self.server_state.tasks
        return limit is None or (
            len(self.server_state.connections) < limit and len(tasks) < limit
        )  # else uvicorn answers 503

    def _start(self, request: _Request) -> None:
        transport = self.transport
        if transport is None or self.flow is None or self.writer is None:
            return
        url = request.url
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.3"},
            "http_version": request.version,
            "server": self.server,
            "client": self.client,
            "scheme": "http",
            "root_path": self.root_path,
            "headers": request.headers,
            "state": self.app_state.copy(),
            "method": request.method.decode("ascii"),
            # As uvicorn: the root path in front of the request's (the route matched without it).
            "path": self.root_path + url.decode("ascii"),
            "raw_path": self.root_path.encode("ascii") + url,
            "query_string": b"",
        }
        cycle = self.cycle = ExpressCycle(
            scope,
            self.writer,
            self.flow,
            self.server_state.default_headers,
            keep_alive=request.keep_alive,
            on_response=self._answered,
        )
        cycle.body = request.body
        tasks = self.server_state.tasks
        task = self.loop.create_task(cycle.run(self.app))
        task.add_done_callback(tasks.discard)
        tasks.add(task)

    def _answered(self) -> None:
        self.server_state.total_requests += 1
        self.cycle = None
        now = self.idle_since = self.loop.time()
        self.idle_limit = self.keep_alive_timeout
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.timer is None or self.timer.when() > now + self.idle_limit:
            # Sooner than the timer would look (the first answer after the head timeout's
            # timer): moved once; later answers only push the deadline it finds.
            self._arm(now + self.idle_limit)
        if self.pending:
            data, self.pending = self.pending, b""
            transport.resume_reading()
            self._serve(data)

    def _idle_check(self) -> None:
        """One timer per connection: closes it once idle past its limit, else looks again."""
        self.timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        now = self.loop.time()
        waiting = self.waiting
        if waiting is not None and now >= self.wait_until:
            self.waiting = None
            self._hand_off(waiting)  # the rest of the body is late: uvicorn's to wait for
            return
        if self.cycle is None and waiting is None and now >= self.idle_since + self.idle_limit:
            (self.writer or transport).close()
            return
        if waiting is not None:
            due = self.wait_until
        elif self.cycle is None:
            due = self.idle_since + self.idle_limit
        else:
            due = now + self.idle_limit
        self._arm(max(due, now + 0.05))

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._idle_check)

    def _hand_off(self, data: bytes) -> asyncio.Protocol | None:
        """uvicorn's guarded protocol takes the connection, from these bytes on."""
        self.server_state.connections.discard(self)  # before the guard counts connections
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.waiting = None
        transport = self.transport
        if transport is None:
            return None
        if self.writer is not None:
            cast(CoalescingTransport, self.writer).flush()  # our last answer before its next
        protocol = self.fallback(  # type: ignore[call-arg]
            config=self.config,
            server_state=self.server_state,
            app_state=self.app_state,
            _loop=self.loop,
        )
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if data and not transport.is_closing():
            protocol.data_received(data)
        return protocol


def express_protocol(
    fallback: ProtocolClass, express: Express, limits: HeadLimits
) -> ProtocolClass:
    """A protocol class serving `express`'s routes in the lane and handing everything else to
    `fallback` (uvicorn's httptools protocol under the guard, serving/protocol.py)."""
    namespace = {
        "fallback": fallback,
        "routes": express.raw(),
        "max_body": express.max_body,
        "max_head": limits.max_header_bytes,
        "max_fields": limits.max_header_fields,
        "head_timeout": limits.header_timeout,
        "max_connections": getattr(fallback, "max_connections", 1 << 30),
    }
    return type(f"Express{fallback.__name__}", (ExpressProtocol,), namespace)
