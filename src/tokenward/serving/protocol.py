"""uvicorn's HTTP/1.1 protocols with a bounded request head, head and body deadlines and a
connection cap.

The libraries' own knobs are used where they do the job: h11 bounds its buffer
(`h11_max_incomplete_event_size`), uvicorn closes idle keep-alive connections
(`timeout_keep_alive`) and answers 503 past `limit_concurrency` running requests. What they
lack is added here, in the few methods the transport and the parsers call:

- httptools (llhttp) keeps a header of any size in memory, and neither parser counts header
  fields: head bytes are counted in `data_received` as they arrive, before the parser sees
  them, and the head is cut at the limit (431, or 414 when the URL is what is long);
- uvicorn gives a connection that sends nothing, or a head a byte at a time, all the time it
  wants: one timer per connection closes it (with a 408 if part of a head came);
- uvicorn also waits forever for the rest of a request body (a `Content-Length: 1000000`
  sent a byte a minute holds the connection, and at the gateway one to the upstream too): the
  same timer gives a body `body_timeout` from its last byte, then answers 408, or closes if a
  response has started. Only while a body is due and we are reading: not while the app has
  not asked for it (flow control, `Expect: 100-continue`), and never during a response to a
  request without a body (a download, a long poll);
- uvicorn accepts connections until the process runs out of file descriptors: past the
  limit a new connection is closed at once, before any work is spent on it. Closing beats a
  503 there: an answer written before the request was read, then a close, is often lost to
  the reset our kernel sends for the unread request, and a flood must cost us as little as
  possible. Requests on the connections already held are served as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from tokenward.serving.limits import HeadLimits, connection_limit

ProtocolClass = type[asyncio.Protocol]

# After a refusal, what the client still sends is read and dropped for a while (nginx's
# lingering close): closing with unread data makes the kernel reset the connection, and the
# client would lose the answer before reading it.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20


def _answer(status: int, reason: str, text: str) -> bytes:
    # The error shape of every other refusal (RFC 6749 §5.2 style), so clients parse one format.
    body = b'{"error":"invalid_request","error_description":"%s"}' % text.encode("ascii")
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


ANSWERS = {
    408: _answer(408, "Request Timeout", "the request head took too long"),
    414: _answer(414, "URI Too Long", "the request URL is too long"),
    431: _answer(431, "Request Header Fields Too Large", "the request header is too large"),
}
SLOW_BODY = _answer(408, "Request Timeout", "the request body took too long")


class _Throttled:
    """At most one log line per kind and interval: an attack must not flood the log."""

    def __init__(self, interval: float = 10.0) -> None:
        self._interval = interval
        self._next: dict[str, float] = {}
        self._missed: dict[str, int] = {}
        self._log = logging.getLogger("uvicorn.error")

    def warning(self, now: float, kind: str, message: str) -> None:
        if now < self._next.get(kind, 0.0):
            self._missed[kind] = self._missed.get(kind, 0) + 1
            return
        self._next[kind] = now + self._interval
        missed = self._missed.pop(kind, 0)
        suffix = f" ({missed} more since the last line)" if missed else ""
        self._log.warning("%s%s", message, suffix)


_warnings = _Throttled()


def no_delay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on an accepted TCP connection. asyncio does it only for
    sockets whose `proto` is IPPROTO_TCP, and a socket made as `socket(AF_INET, SOCK_STREAM)`
    (ours, and most that are handed to uvicorn) says 0; uvicorn then writes a response's head
    and body separately, and the body waited for the client's delayed ACK, 40 ms on Linux, on
    every keep-alive response (20 requests/s on one connection, measured).
    """
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # the peer may already be gone
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Refused(Exception):
    """Raised in a parser callback to stop the parser; the answer is `_Head.refusal`."""


class _Head:
    """The guard's state for one connection, in one attribute of the protocol: uvicorn's
    protocols already hold 28, and past 30 CPython stops sharing instance dict keys, which
    slows every attribute access on the request path."""

    __slots__ = (
        "body_since",
        "deadline",
        "drained",
        "draining",
        "held",
        "in_head",
        "lines",
        "refusal",
        "size",
        "timer",
    )

    def __init__(self, deadline: float) -> None:
        self.in_head = True  # the next bytes belong to a request head
        self.size = 0  # bytes of the current head so far
        self.lines = 0  # line ends in it, counted while it is incomplete
        self.deadline = deadline  # when the pending head must be complete; 0.0: none pending
        self.refusal = 0  # the status a parser callback refused the head with; 0: none
        self.draining = False  # refused: what comes is read and dropped
        self.drained = 0
        self.timer: asyncio.TimerHandle | None = None
        # Between a head and the end of its message (a body is due): when the body last moved.
        self.body_since = 0.0
        self.held = False  # the timer last found that body waiting on us, not on the client

    def next_message(self) -> None:
        """A request message ended: what comes next is a new head."""
        self.in_head = True
        self.size = 0
        self.lines = 0
        self.deadline = 0.0


class _Guard(asyncio.Protocol):
    """Mixed in before a uvicorn HTTP protocol class by `limited`."""

    # From HeadLimits, set on each class `limited` makes.
    max_head: int
    max_url: int
    max_fields: int
    head_timeout: float
    body_timeout: float
    tick: float  # how often the timer looks at an idle connection: the shorter timeout
    max_connections: int

    # uvicorn's, in both of its protocols.
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    connections: set[Any]
    cycle: Any
    flow: Any

    _head: _Head
    _rejected = False  # set on the instance only for a connection closed at once

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self.connections) >= self.max_connections:
            self._rejected = True
            transport.close()
            _warnings.warning(
                self.loop.time(),
                "connections",
                f"Connection limit ({self.max_connections}) reached: new connections are closed.",
            )
            return
        no_delay(transport)
        # The first head is timed from the accept: a connection that sends nothing is closed.
        now = self.loop.time()
        head = self._head = _Head(now + self.head_timeout)
        head.timer = self.loop.call_at(now + self.tick, self._check_deadline)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._rejected:
            return  # uvicorn never saw this connection
        if self._head.timer is not None:
            self._head.timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        head = self._head
        if head.draining:
            head.drained += len(data)
            if head.drained > LINGER_BYTES:
                self.transport.close()
            return
        while head.in_head:
            size = head.size + len(data)
            if size <= self.max_head:
                head.size = size
                super().data_received(data)
                if head.in_head and head.size:
                    self._incomplete(head, data)
                return
            # This chunk would take the head past the limit: the parser gets only what fits
            # (the head may end there); if the head goes on, the rest is refused unseen.
            room = self.max_head - head.size
            if room <= 0:
                self._refuse(self._too_large())
                return
            head.size = self.max_head
            super().data_received(data[:room])
            if head.draining or self.transport.is_closing():
                return
            data = data[room:]
        head.body_since = self.loop.time()  # a body moved: one clock read, no timer touched
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with 400, including the ones our callbacks raise.
        if self._head.refusal:
            self._refuse(self._head.refusal)
        else:
            cast(Any, super()).send_400_response(msg)

    def _incomplete(self, head: _Head, data: bytes) -> None:
        """The head goes on past this chunk: bound its fields as they come (httptools keeps
        every parsed field until the head ends) and start its clock."""
        head.lines += data.count(b"\n")
        if head.lines > self.max_fields + 1:  # the request line, then one line per field
            self._refuse(431)
        elif not head.deadline:
            head.deadline = self.loop.time() + self.head_timeout

    def _head_done(self, url: int, fields: int) -> int:
        """A parser has the whole head: the status to refuse it with, or 0 to serve it."""
        status = 414 if url > self.max_url else 431 if fields > self.max_fields else 0
        head = self._head
        if status:
            head.refusal = status
        else:
            head.in_head = False  # until the message ends, a body is due (if it has one)
            head.body_since = self.loop.time()
            head.held = False
        return status

    def _too_large(self) -> int:
        return 414 if self._partial_url() > self.max_url else 431

    def _partial_url(self) -> int:
        raise NotImplementedError

    def _responding(self) -> bool:
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete

    def _check_deadline(self) -> None:
        # One timer per connection, moved forward lazily: nothing is scheduled per request or
        # per chunk; they only note the time, and the timer looks when something may be due.
        # It never sleeps longer than `tick`, so a head or body that starts while it sleeps
        # is looked at in time.
        head = self._head
        if head.draining or self.transport.is_closing():
            return
        now = self.loop.time()
        due = self._head_due(head, now) if head.in_head else self._body_due(head, now)
        if due:
            head.timer = self.loop.call_at(min(due, now + self.tick), self._check_deadline)

    def _head_due(self, head: _Head, now: float) -> float:
        """When the pending head must be complete (0.0 once refused; a past time: none due)."""
        deadline = head.deadline
        if deadline and now >= deadline and not self._responding():
            if head.size:
                self._refuse(408)
            else:
                self.transport.close()  # connected and sent nothing: nobody to answer
            return 0.0
        return deadline if deadline > now else now + self.tick

    def _body_due(self, head: _Head, now: float) -> float:
        """When the pending body times out, or 0.0 once it has been given up on."""
        if self._waiting_on_us():
            # The client may rightly be waiting for us: its clock starts when we read again.
            head.held = True
            return now + self.tick
        if head.held:  # it stopped waiting since the last look, at most `tick` ago
            head.held = False
            head.body_since = now
        expiry = head.body_since + self.body_timeout
        if now < expiry:
            return expiry
        head.draining = True
        _warnings.warning(
            now, "body", "Request body stalled past body_timeout: 408, or closed mid-answer."
        )
        cycle = self.cycle
        if cycle is None:
            self._send_refusal(SLOW_BODY)
            return 0.0
        # The app waits in receive(): it gets a disconnect, and uvicorn drops whatever it may
        # still send, so our 408 is the only answer.
        cycle.disconnected = True
        cycle.message_event.set()
        if cycle.response_started:
            self.transport.close()  # a second answer would corrupt the one under way
        else:
            self._send_refusal(SLOW_BODY)
        return 0.0

    def _waiting_on_us(self) -> bool:
        """The app has not asked for more of the body: its buffer is full (uvicorn paused
        reading) or the client waits for `100 Continue`, which uvicorn sends at the app's
        first receive()."""
        if self.flow.read_paused:
            return True
        cycle = self.cycle
        return cycle is not None and bool(cycle.waiting_for_100_continue)

    def handle_websocket_upgrade(self, *args: Any) -> None:
        # The connection belongs to the WebSocket protocol from here: our clock stops.
        head = self._head
        head.draining = True
        if head.timer is not None:
            head.timer.cancel()
        cast(Any, super()).handle_websocket_upgrade(*args)

    def _refuse(self, status: int) -> None:
        head = self._head
        head.in_head = False
        head.draining = True
        if head.timer is not None:
            head.timer.cancel()
        _warnings.warning(self.loop.time(), str(status), f"Request head refused: {status}.")
        if self.transport.is_closing():
            return
        if self._responding():
            self.transport.close()  # an answer is under way: a second one would corrupt it
            return
        self._send_refusal(ANSWERS[status])

    def _send_refusal(self, answer: bytes) -> None:
        """Write a refusal, half-close, and drop what the client still sends for a while."""
        transport = self.transport
        transport.write(answer)
        if transport.can_write_eof():
            transport.write_eof()
            self._head.timer = self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()


class _HttpToolsGuard(_Guard):
    url: bytes
    headers: list[tuple[bytes, bytes]]

    def on_headers_complete(self) -> None:
        if self._head_done(len(self.url), len(self.headers)):
            raise _Refused  # stops llhttp; uvicorn answers through send_400_response
        super().on_headers_complete()  # type: ignore[misc]

    def on_message_complete(self) -> None:
        super().on_message_complete()  # type: ignore[misc]
        self._head.next_message()

    def _partial_url(self) -> int:
        return len(getattr(self, "url", b""))  # set from the first byte of a request on


class _H11Guard(_Guard):
    conn: h11.Connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cast(Any, super()).__init__(*args, **kwargs)
        self.conn = _Connection(self, self.max_head)

    def _partial_url(self) -> int:
        buffered, _ = self.conn.trailing_data
        parts = buffered.split(b"\n", 1)[0].split(b" ", 2)
        return len(parts[1]) if len(parts) > 1 else 0


class _Connection(h11.Connection):
    """h11's connection, telling the guard where each request head and message ends."""

    def __init__(self, guard: _H11Guard, max_incomplete_event_size: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_incomplete_event_size)
        self._guard = guard

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            status = self._guard._head_done(len(event.target), len(event.headers))
            if status:
                raise h11.RemoteProtocolError("request head over the limits", status)
        elif isinstance(event, h11.EndOfMessage):
            self._guard._head.next_message()
        return event


def parser_protocol() -> ProtocolClass:
    """uvicorn's httptools protocol when httptools is installed (about twice h11's rate),
    else its h11 one."""
    if importlib.util.find_spec("httptools") is not None:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415

        return HttpToolsProtocol
    return H11Protocol


def limited(base: ProtocolClass, limits: HeadLimits, max_connections: int) -> ProtocolClass:
    """`base` (a uvicorn HTTP protocol class, or a subclass of one) enforcing `limits`."""
    if issubclass(base, H11Protocol):
        guard: type[_Guard] = _H11Guard
    elif hasattr(base, "on_headers_complete"):
        guard = _HttpToolsGuard
    else:
        raise TypeError(f"{base.__name__} is not one of uvicorn's HTTP/1.1 protocols")
    namespace = {
        "max_head": limits.max_header_bytes,
        "max_url": limits.max_url_bytes,
        "max_fields": limits.max_header_fields,
        "head_timeout": limits.header_timeout,
        "body_timeout": limits.body_timeout,
        "tick": min(limits.header_timeout, limits.body_timeout),
        "max_connections": max_connections,
    }
    return type(f"Limited{base.__name__}", (guard, base), namespace)


def server_options(
    limits: HeadLimits,
    *,
    fds_per_connection: int,
    wrap: Callable[[ProtocolClass], ProtocolClass] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` that enforce `limits` (`wrap`: a further change
    to the protocol class, like the gateway's coalesced writes). Raises the soft
    RLIMIT_NOFILE to the hard limit; LimitError when max_connections cannot fit under it."""
    connections = connection_limit(limits, fds_per_connection)
    base = parser_protocol()
    return {
        "http": limited(wrap(base) if wrap is not None else base, limits, connections),
        "h11_max_incomplete_event_size": limits.max_header_bytes,
        # uvicorn answers 503 once this many requests run, counting those whose client left
        # (each may still hold an upstream or database connection); connections stay below it,
        # so it only bounds those orphans, and with them the descriptors they hold.
        "limit_concurrency": connections + 1,
    }
