"""The express lane (serving/express.py), driven in memory through a recording transport: what
it serves itself, what it hands to uvicorn's guarded protocol, and that both answer alike."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from tests.serving.test_protocol import Recorder, answers_on, until
from tokenward.serving import express
from tokenward.serving.coalescing import coalescing
from tokenward.serving.express import Express, ExpressProtocol, express_protocol
from tokenward.serving.limits import HeadLimits
from tokenward.serving.protocol import limited

LIMITS = HeadLimits(max_header_bytes=4096, max_url_bytes=1024, max_header_fields=20)
SCOPES: list[dict[str, Any]] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes `<path> <body>`. /slow answers after 0.3 s, /fail raises before answering,
    /silent returns without answering, /inject answers with a header value holding CRLF,
    /wait reads past the body (until the client goes) and answers nothing, /whole reads the
    body to its end."""
    SCOPES.append(scope)
    path = scope["path"]
    message = await receive()
    body = message.get("body", b"")
    while path == "/whole" and message.get("more_body", False):  # the whole body, as uvicorn
        message = await receive()  # gives it in parts
        body += message.get("body", b"")
    if path == "/slow":
        await asyncio.sleep(0.3)
    elif path == "/fail":
        raise ValueError("request data in a message")
    elif path == "/silent":
        return
    elif path == "/wait":
        SCOPES.append(await receive())
        return
    headers = [(b"content-type", b"text/plain")]
    if path == "/inject":
        headers.append((b"x-bad", b"a\r\nset-cookie: evil=1"))
    answer = path.encode() + b" " + body
    if path != "/unsized":
        headers.append((b"content-length", str(len(answer)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if path == "/unsized":  # in two parts, without a length: the lane gathers them
        await send({"type": "http.response.body", "body": answer[:3], "more_body": True})
        answer = answer[3:]
    await send({"type": "http.response.body", "body": answer})


LANE = frozenset(
    ("POST", path)
    for path in ("/x", "/slow", "/fail", "/silent", "/inject", "/unsized", "/wait", "/whole")
)


def config(keep_alive: float = 5.0) -> uvicorn.Config:
    made = uvicorn.Config(
        app, lifespan="off", log_config=None, log_level="critical", proxy_headers=False
    )
    made.timeout_keep_alive = keep_alive  # type: ignore[assignment]  # uvicorn types it int
    made.load()
    return made


class Transport(Recorder):
    """The recording transport, which a protocol can hand over (uvicorn does so for
    WebSockets, the lane for whatever it does not serve)."""

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def get_write_buffer_size(self) -> int:
        return 0


def express_class(limits: HeadLimits = LIMITS, connections: int = 8) -> type[Any]:
    fallback = limited(coalescing(HttpToolsProtocol), limits, connections)
    return express_protocol(fallback, Express(LANE, max_body=1000), limits)


class Client:
    def __init__(
        self, protocol: type[Any], state: ServerState, made: uvicorn.Config | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        self.transport = Transport(loop)
        first = protocol(config=made or config(), server_state=state, app_state={}, _loop=loop)
        self.transport.protocol = first
        first.connection_made(self.transport)

    @property
    def protocol(self) -> Any:
        return self.transport.protocol

    def send(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.protocol.data_received(chunk)

    @property
    def written(self) -> bytes:
        return bytes(self.transport.written)

    async def answers(self, count: int) -> list[bytes]:
        return await answers_on(self.transport, count)

    def in_lane(self) -> bool:
        return isinstance(self.protocol, ExpressProtocol)


def post(path: bytes, body: bytes = b"a=1", *extra: bytes) -> bytes:
    head = [b"POST " + path + b" HTTP/1.1", b"Host: t", b"Content-Length: %d" % len(body)]
    return b"\r\n".join([*head, *extra, b"", body])


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    SCOPES.clear()
    asyncio.run(test())


def test_a_whole_plain_request_is_answered_in_the_lane_with_uvicorns_scope() -> None:
    async def main() -> None:
        state = ServerState()
        lane = Client(express_class(), state)
        lane.send(post(b"/x", b"a=1", b"X-Trailing: v \t"))
        (answer,) = await lane.answers(1)
        assert lane.in_lane()
        head, body = answer.split(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"content-length: 6\r\n" in head + b"\r\n"
        assert b"connection: close" not in head
        assert body == b"/x a=1"
        # The same request through uvicorn's own protocol gives the app the same scope.
        plain = Client(limited(coalescing(HttpToolsProtocol), LIMITS, 8), state)
        plain.send(post(b"/x", b"a=1", b"X-Trailing: v \t"))
        await plain.answers(1)
        ours, uvicorns = SCOPES
        assert ours.keys() == uvicorns.keys()
        for key in ours:
            if key != "client":  # both from the same recording transport
                assert ours[key] == uvicorns[key], key
        assert (b"x-trailing", b"v") in ours["headers"]
        # Keep-alive: the next request on the connection is served in the lane too.
        lane.send(post(b"/x", b"b=2"))
        assert (await lane.answers(2))[1].endswith(b"/x b=2")
        assert lane.in_lane()
        assert state.total_requests == 3
        assert not lane.transport.closed

    run(main)


@pytest.mark.parametrize(
    "request_bytes",
    [
        post(b"/elsewhere"),  # not a lane route
        post(b"/x?query=1"),  # the raw target is not exactly the route
        post(b"/%78"),  # escaped
        b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n",  # another method
        post(b"/x", b"a" * 1001),  # over the lane's body limit: the app refuses it itself
        post(b"/x", b"a=1", b"Expect: 100-continue"),
        b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na=1\r\n0\r\n\r\n",
        post(b"/x") + post(b"/x", b"b=2"),  # two requests in one read
    ],
    ids=["route", "query", "escaped", "method", "large", "expect", "chunked", "pipelined"],
)
def test_anything_else_is_handed_to_uvicorn_with_every_byte(request_bytes: bytes) -> None:
    async def main() -> None:
        client = Client(express_class(), ServerState())
        client.send(request_bytes)
        expected = request_bytes.count(b" HTTP/1.1\r\n")
        answers = await client.answers(expected + (b"100-continue" in request_bytes))
        assert not client.in_lane()
        assert answers[-1].split(b"\r\n")[0] in (b"HTTP/1.1 200 OK", b"HTTP/1.1 100 Continue")
        if b"/x" in request_bytes and b"GET" not in request_bytes:
            assert answers[-1].endswith(b"b=2" if expected == 2 else b"")

    run(main)


def test_a_request_in_pieces_goes_to_uvicorn_which_times_and_serves_it() -> None:
    async def main() -> None:
        client = Client(express_class(), ServerState())
        whole = post(b"/x", b"a=12345")
        client.send(whole[:20])
        assert not client.in_lane()
        client.send(whole[20:])
        assert (await client.answers(1))[0].endswith(b"/x a=12345")
        client.send(post(b"/x", b"b=2"))  # the connection stays with uvicorn
        assert (await client.answers(2))[1].endswith(b"/x b=2")

    run(main)


def test_the_guard_still_answers_what_it_refuses() -> None:
    async def main() -> None:
        big_head = Client(express_class(), ServerState())
        big_head.send(post(b"/x", b"a=1", b"X-Big: " + b"a" * 5000))
        assert (await big_head.answers(1))[0].startswith(b"HTTP/1.1 431 ")
        fields = [b"X-%d: v" % number for number in range(30)]
        many = Client(express_class(), ServerState())
        many.send(post(b"/x", b"a=1", *fields))
        assert (await many.answers(1))[0].startswith(b"HTTP/1.1 431 ")
        broken = Client(express_class(), ServerState())
        broken.send(b"POST /x HTTP/1.1\r\nHost t\r\n\r\n")
        assert (await broken.answers(1))[0].startswith(b"HTTP/1.1 400 ")

    run(main)


def test_a_request_pipelined_behind_an_answer_under_way_waits_its_turn() -> None:
    async def main() -> None:
        client = Client(express_class(), ServerState())
        client.send(post(b"/slow", b"first"))
        await asyncio.sleep(0.05)
        client.send(post(b"/x", b"second"))
        first, second = await client.answers(2)
        assert first.endswith(b"/slow first")
        assert second.endswith(b"/x second")
        assert client.in_lane()

    run(main)


def test_close_and_http_1_0_close_after_the_answer() -> None:
    async def main() -> None:
        closing = Client(express_class(), ServerState())
        closing.send(post(b"/x", b"a=1", b"Connection: close"))
        (answer,) = await closing.answers(1)
        assert b"connection: close\r\n" in answer
        await until(lambda: closing.transport.closed)
        old = Client(express_class(), ServerState())
        old.send(post(b"/x").replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        await until(lambda: old.transport.closed)
        assert old.written.startswith(b"HTTP/1.1 200 OK")
        assert SCOPES[-1]["http_version"] == "1.0"

    run(main)


def test_an_answer_without_a_length_is_gathered_and_given_one() -> None:
    async def main() -> None:
        client = Client(express_class(), ServerState())
        client.send(post(b"/unsized", b"abc"))
        (answer,) = await client.answers(1)
        assert b"content-length: 12\r\n" in answer
        assert b"transfer-encoding" not in answer
        assert answer.endswith(b"\r\n\r\n/unsized abc")

    run(main)


@pytest.mark.parametrize("path", [b"/fail", b"/silent"])
def test_an_app_that_fails_or_never_answers_gets_a_500_and_the_connection_closed(
    path: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        client = Client(express_class(), ServerState())
        client.send(post(path))
        (answer,) = await client.answers(1)
        assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
        await until(lambda: client.transport.closed)

    run(main)
    assert "request data in a message" not in caplog.text  # the type only, no traceback


def test_a_header_that_would_split_the_answer_is_never_written() -> None:
    async def main() -> None:
        client = Client(express_class(), ServerState())
        client.send(post(b"/inject"))
        await until(lambda: client.transport.closed)
        assert b"set-cookie" not in client.written
        assert client.written.startswith(b"HTTP/1.1 500 ")

    run(main)


def test_the_app_waiting_past_the_body_hears_the_client_go() -> None:
    async def main() -> None:
        client = Client(express_class(), ServerState())
        client.send(post(b"/wait"))
        await until(lambda: len(SCOPES) == 1)
        client.transport.close()
        await until(lambda: len(SCOPES) == 2)
        assert SCOPES[1] == {"type": "http.disconnect"}

    run(main)


def test_idle_connections_are_closed_after_their_timeouts() -> None:
    async def main() -> None:
        quick = HeadLimits(header_timeout=0.2)
        silent = Client(express_class(quick), ServerState())
        started = time.monotonic()
        await until(lambda: silent.transport.closed)
        assert time.monotonic() - started >= 0.2
        served = Client(express_class(), ServerState(), config(keep_alive=0.3))
        served.send(post(b"/x"))
        await served.answers(1)
        answered = time.monotonic()
        await until(lambda: served.transport.closed)
        assert time.monotonic() - answered >= 0.25

    run(main)


def test_shutdown_closes_idle_connections_now_and_busy_ones_after_their_answer() -> None:
    async def main() -> None:
        state = ServerState()
        idle = Client(express_class(), state)
        busy = Client(express_class(), state)
        busy.send(post(b"/slow", b"last"))
        await until(lambda: len(state.tasks) == 1)
        for connection in list(state.connections):
            connection.shutdown()
        assert idle.transport.closed
        assert not busy.transport.closed
        (answer,) = await busy.answers(1)
        assert answer.endswith(b"/slow last")
        assert b"connection: close" in answer
        await until(lambda: busy.transport.closed)
        await until(lambda: not state.tasks)

    run(main)


def test_past_the_connection_cap_a_new_connection_is_closed_at_once() -> None:
    async def main() -> None:
        state = ServerState()
        protocol = express_class(connections=2)
        kept = [Client(protocol, state) for _ in range(2)]
        refused = Client(protocol, state)
        assert refused.transport.closed
        assert not any(client.transport.closed for client in kept)
        assert len(state.connections) == 2

    run(main)


def test_a_request_for_uvicorn_pipelined_behind_a_lane_answer_is_answered_after_it() -> None:
    async def main() -> None:
        client = Client(express_class(), ServerState())
        client.send(post(b"/slow", b"first"))
        await asyncio.sleep(0.05)
        client.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")  # not a lane route
        first, second = await client.answers(2)
        assert first.endswith(b"/slow first")
        assert second.startswith(b"HTTP/1.1 200 ")
        assert not client.in_lane()

    run(main)


def test_shutdown_in_the_step_of_an_answer_still_sends_it() -> None:
    async def main() -> None:
        state = ServerState()
        client = Client(express_class(), state)
        client.send(post(b"/x"))
        lane = client.protocol
        await asyncio.sleep(0)  # the request's task runs to its end before this resumes
        assert lane.cycle is None  # answered...
        assert not client.written  # ...but still in the buffer until the loop step ends
        lane.shutdown()
        assert client.written.endswith(b"/x a=1")
        assert client.transport.closed

    run(main)


CORPUS = [
    post(b"/x"),
    post(b"/x", b""),
    post(b"/x", b"a=1", b"Connection: close"),
    post(b"/x", b"a=1", b"Connection: keep-alive, close"),
    post(b"/x").replace(b"HTTP/1.1", b"HTTP/1.0", 1),
    post(b"/x")
    .replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    .replace(b"Host", b"Connection: keep-alive\r\nHost"),
    post(b"/x", b"a=1", b"Content-Length: 3"),  # repeated, equal
    post(b"/x", b"a=1", b"Content-Length: 4"),  # repeated, different
    post(b"/x", b"a=1", b"X-Folded: a\r\n b"),  # obsolete line folding
    post(b"/x", b"a=1", b"Bad Header: v"),
    post(b"/x", b"a=1", b"X-Nul: a\x00b"),
    post(b"/x", b"a=1").replace(b"Content-Length: 3", b"Content-Length: +3"),
    post(b"/x", b"a=1").replace(b"Content-Length: 3", b"Content-Length: 3 "),
    post(b"/x", b"a=1").replace(b"Content-Length: 3", b"Content-Length: 99999999999999999999"),
    post(b"/x", b"a=1").replace(b"POST", b"post", 1),
    post(b"/x", b"a=1").replace(b"/x", b"http://t/x", 1),
    post(b"/x", b"a=1").replace(b"/x", b"/x/", 1),
    post(b"/x", b"a=1").replace(b"/x", b"//x", 1),
    post(b"/x", b"a=1").replace(b"HTTP/1.1", b"HTTP/2.0", 1),
    post(b"/x", b"a=1").replace(b"\r\n", b"\n"),
    post(b"/x", b"a=1", b"Transfer-Encoding: chunked"),
    post(b"/x", b"a=1", b"Upgrade: websocket", b"Connection: Upgrade"),
    post(b"/x", b"a=1") + b"\r\n",  # a stray line end after the body
    post(b"/x", b"a=1") + b"GARBAGE",
    post(b"/x", b"a=12")[:-1],  # a body one byte short
    post(b"/fail"),  # (/inject differs on purpose: a 500 where uvicorn only closes; above)
    post(b"/silent"),
    b"\r\n" + post(b"/x"),
    b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n",
]


def pieces(request_bytes: bytes, split: str) -> list[bytes]:
    if split == "whole":
        return [request_bytes]
    if split == "head, body":  # as httpx (h11) writes a POST
        head, sep, body = request_bytes.partition(b"\r\n\r\n")
        return [head + sep, body] if sep and body else [request_bytes]
    return [request_bytes[start : start + 7] for start in range(0, len(request_bytes), 7)]


@pytest.mark.parametrize("request_bytes", CORPUS)
@pytest.mark.parametrize("split", ["whole", "head, body", "7 bytes"])
def test_the_lane_answers_byte_for_byte_as_uvicorns_protocol_does(
    request_bytes: bytes, split: str
) -> None:
    """Differential: every request of the corpus, whole, as head then body, or in 7-byte
    pieces, gets the same bytes back (and the same closed or open connection) through the lane
    as through uvicorn's guarded protocol alone, whichever of the two ends up serving it."""

    async def main() -> None:
        outcomes = []
        plain_class = limited(coalescing(HttpToolsProtocol), LIMITS, 8)
        for protocol in (express_class(), plain_class):
            client = Client(protocol, ServerState())
            for piece in pieces(request_bytes, split):
                if not client.transport.closed:
                    client.send(piece)
                    await asyncio.sleep(0.005)  # apart, as two packets come

            # A lane waiting for the rest of a body gives it to uvicorn after BODY_WAIT.
            def settled(watched: Client = client) -> bool:
                return getattr(watched.protocol, "waiting", None) is None

            await until(settled)
            await asyncio.sleep(0.05)  # whatever the app answers, it has answered by now
            # The WebSocket protocol's refusals carry a Date, which may turn a second between.
            written = re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: -\r\n", client.written)
            outcomes.append((written, client.transport.closed))
        assert outcomes[0] == outcomes[1]

    run(main)


def test_under_a_root_path_the_scope_is_uvicorns_too() -> None:
    async def main() -> None:
        made = config()
        made.root_path = "/base"
        state = ServerState()
        lane = Client(express_class(), state, made)
        lane.send(post(b"/x"))
        await lane.answers(1)
        assert lane.in_lane()
        plain = Client(limited(coalescing(HttpToolsProtocol), LIMITS, 8), state, made)
        plain.send(post(b"/x"))
        await plain.answers(1)
        ours, uvicorns = SCOPES
        assert ours["path"] == "/base/x"
        assert {key: value for key, value in ours.items() if key != "client"} == {
            key: value for key, value in uvicorns.items() if key != "client"
        }

    run(main)


def test_a_head_then_its_body_is_served_in_the_lane() -> None:
    async def main() -> None:
        client = Client(express_class(), ServerState())
        head, _, body = post(b"/x", b"a=12345").partition(b"\r\n\r\n")
        client.send(head + b"\r\n\r\n")
        await asyncio.sleep(0.05)
        assert client.in_lane()
        assert not client.written
        client.send(body[:3])
        await asyncio.sleep(0.05)
        client.send(body[3:])
        assert (await client.answers(1))[0].endswith(b"/x a=12345")
        assert client.in_lane()
        client.send(post(b"/x", b"b=2"))  # and the connection serves on in the lane
        assert (await client.answers(2))[1].endswith(b"/x b=2")
        assert client.in_lane()

    run(main)


def test_a_body_that_does_not_follow_its_head_goes_to_uvicorn_and_its_deadline() -> None:
    async def main() -> None:
        quick = HeadLimits(body_timeout=0.3)
        client = Client(express_class(quick), ServerState())
        client.send(post(b"/whole", b"a=12345")[:-2])  # the head, and part of the body
        started = time.monotonic()
        await until(lambda: not client.in_lane())
        assert time.monotonic() - started >= express.BODY_WAIT * 0.9
        (answer,) = await client.answers(1)
        assert answer.startswith(b"HTTP/1.1 408 ")  # the guard's, for the stalled body
        assert time.monotonic() - started >= express.BODY_WAIT + 0.3

    run(main)


def test_shutdown_while_a_body_is_awaited_lets_uvicorn_finish_the_request() -> None:
    async def main() -> None:
        state = ServerState()
        client = Client(express_class(), state)
        whole = post(b"/x", b"a=12345")
        client.send(whole[:-2])
        await asyncio.sleep(0.01)
        for connection in list(state.connections):
            connection.shutdown()
        assert not client.in_lane()
        assert not client.transport.closed
        client.send(whole[-2:])
        (answer,) = await client.answers(1)
        assert answer.endswith(b"/x a=12345")
        assert b"connection: close" in answer
        await until(lambda: client.transport.closed)

    run(main)
