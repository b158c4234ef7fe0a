"""The head guard around uvicorn's protocols, driven in memory through a recording transport.

Each test runs against both parsers (httptools and h11); a wrapper under the guard records
how many bytes reached the parser, so "bounded before buffering" is checked, not assumed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from tokenward.gateway.serving import http_protocol
from tokenward.serving import limits as limits_module
from tokenward.serving.limits import HeadLimits, LimitError, connection_limit
from tokenward.serving.protocol import LINGER_BYTES, limited, server_options

SMALL = HeadLimits(max_header_bytes=4096, max_url_bytes=1024, max_header_fields=20)
GET = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"


SEEN: list[str] = []  # what the app last received: "http.disconnect" when the guard gave up


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers `<path> <body bytes> <header fields>`, having read the whole body. Some paths
    behave otherwise: /early answers before reading the body, /poll answers after 0.6 s,
    /stream sends its answer in six pieces 0.1 s apart, /later waits 0.6 s before reading.
    A WebSocket is accepted and held open."""
    path = scope["path"]
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await receive()  # until the client goes
        return
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(6):
            await asyncio.sleep(0.1)
            await send({"type": "http.response.body", "body": b"piece ", "more_body": True})
        await send({"type": "http.response.body", "body": b"end"})
        return
    if path in ("/poll", "/later"):
        await asyncio.sleep(0.6)
    size, more = 0, path != "/early"
    while more:
        message = await receive()
        SEEN[:] = [message["type"]]
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = f"{path} {size} {len(scope['headers'])}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


CONFIG = uvicorn.Config(app, lifespan="off", log_config=None, log_level="critical")
CONFIG.load()


class Recorder(asyncio.Transport):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.written = bytearray()
        self.eof = False
        self.closed = False
        self.protocol: asyncio.Protocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.eof, "a write after the half-close"
        if not self.closed:
            self.written += data

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.protocol is not None:
                self.loop.call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 80)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def recording(base: type[Any]) -> type[Any]:
    class Recording(base):  # type: ignore[misc]
        fed = 0

        def data_received(self, data: bytes) -> None:
            self.fed += len(data)
            super().data_received(data)

    return Recording


class Connection:
    def __init__(self, protocol: type[Any], state: ServerState) -> None:
        loop = asyncio.get_running_loop()
        self.transport = Recorder(loop)
        self.protocol = protocol(config=CONFIG, server_state=state, app_state={}, _loop=loop)
        self.transport.protocol = self.protocol
        self.protocol.connection_made(self.transport)

    def send(self, data: bytes, chunk: int | None = None) -> None:
        step = chunk or len(data)
        for start in range(0, len(data), step):
            self.protocol.data_received(data[start : start + step])

    @property
    def written(self) -> bytes:
        return bytes(self.transport.written)

    async def answers(self, count: int) -> list[bytes]:
        return await answers_on(self.transport, count)

    async def status(self) -> int:
        return int((await self.answers(1))[0].split(b" ")[1])


async def answers_on(transport: Recorder, count: int) -> list[bytes]:
    """The answers written on `transport`, once there are `count` of them."""
    await until(lambda: transport.written.count(b"HTTP/1.1 ") >= count)
    return [b"HTTP/1.1 " + part for part in bytes(transport.written).split(b"HTTP/1.1 ")[1:]]


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        await asyncio.sleep(0.005)  # bounded poll: the protocol answers on the loop


PARSERS = [HttpToolsProtocol, H11Protocol]


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


@pytest.fixture(params=PARSERS, ids=["httptools", "h11"])
def connect(request: pytest.FixtureRequest) -> Callable[..., Connection]:
    def make(
        limits: HeadLimits = SMALL, state: ServerState | None = None, connections: int = 8
    ) -> Connection:
        protocol = limited(recording(request.param), limits, connections)
        return Connection(protocol, state or ServerState())

    return make


def test_a_normal_request_is_served_whole(connect: Callable[..., Connection]) -> None:
    async def main() -> None:
        connection = connect()
        connection.send(GET)
        assert (await connection.answers(1))[0].endswith(b"/x 0 1")
        assert connection.protocol.fed == len(GET)

    run(main)


@pytest.mark.parametrize("chunk", [None, 1000, 65536])
def test_a_head_past_the_limit_is_431_and_never_reaches_the_parser(
    connect: Callable[..., Connection], chunk: int | None
) -> None:
    async def main() -> None:
        connection = connect()
        connection.send(b"GET /x HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 300_000, chunk)
        assert await connection.status() == 431
        assert b"connection: close" in connection.written
        assert connection.protocol.fed <= SMALL.max_header_bytes
        assert connection.transport.eof  # half-closed after the answer, then drained
        connection.send(b"b" * (LINGER_BYTES + 1))  # more than it drains: closed, unparsed
        assert connection.protocol.fed <= SMALL.max_header_bytes
        await until(lambda: connection.transport.closed)

    run(main)


def test_a_head_just_under_the_limit_is_served(connect: Callable[..., Connection]) -> None:
    async def main() -> None:
        connection = connect()
        filler = SMALL.max_header_bytes - len(GET) - len(b"X-F: \r\n")
        head = b"GET /x HTTP/1.1\r\nHost: t\r\nX-F: " + b"a" * filler + b"\r\n\r\n"
        assert len(head) == SMALL.max_header_bytes
        connection.send(head, 1000)
        assert (await connection.answers(1))[0].endswith(b"/x 0 2")

    run(main)


def test_more_fields_than_the_limit_are_431(connect: Callable[..., Connection]) -> None:
    def head(fields: int) -> bytes:
        lines = b"".join(b"X-%d: 1\r\n" % index for index in range(fields - 1))
        return b"GET /x HTTP/1.1\r\nHost: t\r\n" + lines + b"\r\n"

    async def main() -> None:
        at_limit = connect()
        at_limit.send(head(SMALL.max_header_fields))
        assert (await at_limit.answers(1))[0].endswith(b"/x 0 20")
        over = connect()
        over.send(head(SMALL.max_header_fields + 1))
        assert await over.status() == 431
        # An unterminated head of small fields, a few at a time: refused as they pile up.
        trickle = connect()
        trickle.send(b"GET /x HTTP/1.1\r\n" + b"a: b\r\n" * 1000, 40)
        assert await trickle.status() == 431
        assert trickle.protocol.fed < 50 * len(b"a: b\r\n")

    run(main)


def test_a_long_url_is_414(connect: Callable[..., Connection]) -> None:
    async def main() -> None:
        complete = connect()
        complete.send(b"GET /" + b"u" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        assert await complete.status() == 414
        endless = connect()
        endless.send(b"GET /" + b"u" * 100_000, 1500)
        assert await endless.status() == 414
        assert endless.protocol.fed <= SMALL.max_header_bytes

    run(main)


def test_bodies_are_not_limited_and_each_head_is_counted_afresh(
    connect: Callable[..., Connection],
) -> None:
    async def main() -> None:
        connection = connect()
        body = b"z" * 200_000
        big_head = b"POST /b HTTP/1.1\r\nHost: t\r\nX-F: " + b"a" * 3000 + b"\r\n"
        post = big_head + b"Content-Length: %d\r\n\r\n" % len(body)
        connection.send(post + body)  # head and body in one chunk: only the head counts
        assert (await connection.answers(1))[0].endswith(b"/b 200000 3")
        connection.send(post + body, 7000)  # a second head as large, on the same connection
        assert (await connection.answers(2))[1].endswith(b"/b 200000 3")

    run(main)


def test_pipelined_requests_are_all_answered(connect: Callable[..., Connection]) -> None:
    async def main() -> None:
        connection = connect()
        connection.send(GET + GET.replace(b"/x", b"/y"))
        answers = await connection.answers(2)
        assert answers[0].endswith(b"/x 0 1")
        assert answers[1].endswith(b"/y 0 1")

    run(main)


def test_a_slow_head_is_408_and_a_silent_connection_is_closed(
    connect: Callable[..., Connection],
) -> None:
    quick = HeadLimits(header_timeout=0.2)

    async def main() -> None:
        started = time.monotonic()
        slow = connect(quick)
        slow.send(b"GET /x HTTP/1.1\r\nHost: t\r\n")
        silent = connect(quick)
        served = connect(quick)
        served.send(GET)
        await until(lambda: slow.transport.eof and silent.transport.closed)
        assert time.monotonic() - started >= 0.2
        assert slow.written.startswith(b"HTTP/1.1 408 ")  # then half-closed, drained a while
        assert silent.written == b""
        # Between requests only uvicorn's keep-alive timeout applies (5 s): still open.
        assert not served.transport.closed
        served.send(b"GET /again HTTP/1.1\r\n")  # a second head, started and left unfinished
        await until(lambda: served.transport.eof)
        assert served.written.count(b"HTTP/1.1 200 ") == 1
        assert served.written.endswith(b'"the request head took too long"}')

    run(main)


QUICK_BODY = HeadLimits(body_timeout=0.3)
POST = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"
CHUNKED = b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("head", [POST, CHUNKED], ids=["length", "chunked"])
def test_a_stalled_body_is_408_and_the_app_sees_a_disconnect(
    connect: Callable[..., Connection], head: bytes
) -> None:
    async def main() -> None:
        SEEN.clear()
        started = time.monotonic()
        stalled = connect(QUICK_BODY)
        stalled.send(head + (b"a\r\nfirst part\r\n" if head == CHUNKED else b"first part"))
        await until(lambda: stalled.transport.eof)
        assert time.monotonic() - started >= 0.3
        assert stalled.written.startswith(b"HTTP/1.1 408 ")
        assert stalled.written.endswith(b'"error_description":"the request body took too long"}')
        await until(lambda: SEEN == ["http.disconnect"])  # the app stopped waiting too
        assert stalled.written.count(b"HTTP/1.1 ") == 1  # and nothing it sent went out
        stalled.send(b"more body, too late")  # read and dropped, then closed
        await until(lambda: stalled.transport.closed, within=5)

    run(main)


def test_a_body_that_keeps_coming_is_served_however_long_it_takes(
    connect: Callable[..., Connection],
) -> None:
    async def main() -> None:
        connection = connect(QUICK_BODY)
        connection.send(POST)
        started = time.monotonic()
        for _ in range(10):  # 1 s in all, 0.1 s apart: each well inside the 0.3 s
            connection.send(b"z" * 100)
            await asyncio.sleep(0.1)
        assert time.monotonic() - started > 0.6
        assert (await connection.answers(1))[0].endswith(b"/x 1000 2")
        # The next request on the connection is timed afresh.
        connection.send(POST + b"y" * 1000)
        assert (await connection.answers(2))[1].endswith(b"/x 1000 2")

    run(main)


def test_slow_answers_to_requests_without_a_body_are_not_cut(
    connect: Callable[..., Connection],
) -> None:
    async def main() -> None:
        poll = connect(QUICK_BODY)  # a long poll: the app answers after twice the timeout
        poll.send(GET.replace(b"/x", b"/poll"))
        download = connect(QUICK_BODY)  # a download that takes twice the timeout
        download.send(GET.replace(b"/x", b"/stream"))
        assert (await poll.answers(1))[0].endswith(b"/poll 0 1")
        await until(lambda: download.written.endswith(b"0\r\n\r\n"))
        assert download.written.startswith(b"HTTP/1.1 200 ")
        assert not poll.transport.closed
        assert not download.transport.closed

    run(main)


def test_a_body_the_app_has_not_asked_for_is_not_timed(
    connect: Callable[..., Connection],
) -> None:
    async def main() -> None:
        # The app reads after 0.6 s; meanwhile uvicorn has stopped reading (64 KiB buffered),
        # so the client cannot send the rest.
        big = b"z" * 200_000
        paused = connect(QUICK_BODY)
        paused.send(b"POST /later HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n")
        paused.send(big[:100_000])
        await asyncio.sleep(0.5)
        assert paused.protocol.flow.read_paused
        await until(lambda: not paused.protocol.flow.read_paused)
        paused.send(big[100_000:])
        assert (await paused.answers(1))[0].endswith(b"/later 200000 2")
        # `Expect: 100-continue`: the client sends its body once told to, at the app's read.
        expect = connect(QUICK_BODY)
        expect.send(
            b"POST /later HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        await until(lambda: b"100 Continue" in expect.written, within=5)
        expect.send(b"body")
        assert (await expect.answers(2))[1].endswith(b"/later 4 3")

    run(main)


def test_a_stalled_body_after_the_answer_started_closes_without_a_second_answer(
    connect: Callable[..., Connection],
) -> None:
    async def main() -> None:
        early = connect(QUICK_BODY)  # answered before its body was read, then the body stalls
        early.send(POST.replace(b"/x", b"/early") + b"part")
        assert (await early.answers(1))[0].endswith(b"/early 0 2")
        await until(lambda: early.transport.closed)
        assert early.written.count(b"HTTP/1.1 ") == 1
        assert not early.transport.eof  # closed outright: no 408 after the answer

    run(main)


def test_the_body_timeout_stops_at_a_websocket_upgrade(
    connect: Callable[..., Connection],
) -> None:
    async def main() -> None:
        connection = connect(QUICK_BODY)
        upgraded: list[asyncio.BaseProtocol] = []
        connection.transport.set_protocol = upgraded.append  # type: ignore[assignment]  # records the upgrade
        connection.send(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert upgraded  # the connection is the WebSocket protocol's now
        await until(lambda: b"101 Switching Protocols" in connection.written)
        await asyncio.sleep(0.6)  # twice the body timeout: nothing more is written, nor closed
        assert connection.written.endswith(b"\r\n\r\n")
        assert not connection.transport.closed
        upgraded[0].connection_lost(None)

    run(main)


def test_past_the_connection_limit_new_connections_are_closed_at_once(
    connect: Callable[..., Connection],
) -> None:
    async def main() -> None:
        state = ServerState()
        held = [connect(state=state, connections=2) for _ in range(2)]
        refused = connect(state=state, connections=2)
        assert refused.transport.closed
        assert refused.written == b""
        held[0].send(GET)  # the existing ones are served
        assert await held[0].status() == 200
        held[1].transport.close()
        await until(lambda: len(state.connections) == 1)
        again = connect(state=state, connections=2)
        again.send(GET)
        assert await again.status() == 200

    run(main)


def test_composed_with_the_gateways_coalesced_writes_the_answer_precedes_the_half_close() -> None:
    async def main() -> None:
        connection = Connection(http_protocol(SMALL), ServerState())
        connection.send(GET)
        assert await connection.status() == 200
        connection.send(b"GET /x HTTP/1.1\r\nX-Big: " + b"a" * 10_000)
        await until(lambda: connection.transport.eof)
        assert (await connection.answers(2))[1].startswith(b"HTTP/1.1 431 ")

    run(main)


def test_bounds_are_refused_naming_the_setting() -> None:
    with pytest.raises(LimitError, match="max_header_bytes must be between") as caught:
        HeadLimits(max_header_bytes=10)
    assert caught.value.field == "max_header_bytes"
    with pytest.raises(LimitError, match="header_timeout"):
        HeadLimits(header_timeout=float("nan"))
    with pytest.raises(LimitError, match=r"body_timeout must be between 0\.1 and 600"):
        HeadLimits(body_timeout=0)


def test_the_connection_limit_fits_the_descriptor_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits_module, "raise_open_files_limit", lambda: 1024)
    assert connection_limit(HeadLimits(), fds_per_connection=2) == (1024 - 256) // 2
    assert connection_limit(HeadLimits(), fds_per_connection=1) == 768
    assert connection_limit(HeadLimits(max_connections=300), fds_per_connection=2) == 300
    with pytest.raises(LimitError, match="needs about 1056 file descriptors") as caught:
        connection_limit(HeadLimits(max_connections=400), fds_per_connection=2)
    assert caught.value.field == "max_connections"
    monkeypatch.setattr(limits_module, "raise_open_files_limit", lambda: 1 << 20)
    assert connection_limit(HeadLimits(), fds_per_connection=2) == 1024


def test_server_options_use_uvicorns_own_knobs_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits_module, "raise_open_files_limit", lambda: 4096)
    options = server_options(SMALL, fds_per_connection=1)
    assert options["h11_max_incomplete_event_size"] == SMALL.max_header_bytes
    assert options["limit_concurrency"] == 1025
    assert options["http"].max_connections == 1024
    assert issubclass(options["http"], HttpToolsProtocol)
