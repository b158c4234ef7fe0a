"""A small HTTP/1.1 client for upstreams: pooled keep-alive connections, streamed bodies.

Chosen over httpx by measurement (docs/gateway.md, "Choosing the stack"): the proxy needs only
one origin-form request and a streamed response per exchange, and httpx's general machinery
(URL objects, header models, auth and redirect hooks, the httpcore pool) cost more per request
than the rest of the gateway together. Framing follows RFC 9112 §6.3; anything ambiguous from
the upstream (two Content-Lengths that differ, a bad chunk size, an overlong head) is a 502.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tokenward.gateway.headers import connection_names
from tokenward.gateway.model import Upstream
from tokenward.gateway.upstream_tls import UpstreamTls, open_stream, tls_failure

MAX_HEAD_BYTES = 64 * 1024
CHUNK = 64 * 1024
NO_BODY_STATUS = frozenset({204, 304})


class UpstreamError(Exception):
    status = 502
    reason = "upstream_error"


class ConnectFailed(UpstreamError):
    reason = "upstream_unreachable"


class TlsFailed(ConnectFailed):
    """The TLS handshake failed (the certificate did not verify, the upstream wanted a client
    certificate we do not have, ...): nothing was sent, so the next upstream may be tried."""

    reason = "upstream_tls"


class TlsRefused(UpstreamError):
    """The upstream refused the TLS session after the handshake (TLS 1.3 reports a missing
    or unaccepted client certificate only then): the request may have been sent."""

    reason = "upstream_tls"


class UpstreamTimeout(UpstreamError):
    status = 504
    reason = "upstream_timeout"


class ConnectTimeout(UpstreamTimeout):
    """Connecting timed out: nothing was sent, so another upstream may take any request."""


class BadUpstream(UpstreamError):
    reason = "upstream_protocol"


class StaleConnection(UpstreamError):
    """A reused connection closed before answering: safe to retry a request with no body."""


@dataclass(slots=True)
class ResponseHead:
    status: int
    headers: list[tuple[bytes, bytes]]  # lower-case names, as received
    framing: str  # none | length | chunked | close
    length: int
    keep_alive: bool
    # Field names the upstream's Connection header lists: hop-by-hop for this answer too.
    listed: frozenset[bytes] | tuple[()] = ()
    body: bytes | None = None  # a small body read together with the head


class Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float, idle_timeout: float) -> bool:
        return (
            now - self.idle_since < idle_timeout
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Idle keep-alive connections per upstream origin, most recently used first.

    `idle_timeout` must stay below the upstream's own keep-alive timeout (uvicorn: 5 s, nginx:
    75 s), so we drop a connection before the upstream does rather than race its close.
    """

    def __init__(self, max_idle: int = 64, idle_timeout: float = 4.0) -> None:
        # Keyed by the TLS settings too (identity: gateway/upstream_tls.py): a connection is
        # never reused under other TLS settings than it was opened with.
        self._idle: dict[tuple[str, int, UpstreamTls | None], list[Connection]] = {}
        self._max_idle = max_idle
        self._idle_timeout = idle_timeout

    async def acquire(self, upstream: Upstream, connect_timeout: float) -> tuple[Connection, bool]:
        idle = self._idle.get((upstream.host, upstream.port, upstream.tls))
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.usable(now, self._idle_timeout):
                return connection, True
            connection.close()
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await open_stream(upstream, MAX_HEAD_BYTES)
        except ssl.SSLError as exc:
            raise TlsFailed(tls_failure(exc)) from None
        except TimeoutError:
            raise ConnectTimeout("connecting to the upstream timed out") from None
        except OSError:
            raise ConnectFailed("the upstream refused or dropped the connection") from None
        return Connection(reader, writer), False

    def release(self, upstream: Upstream, connection: Connection) -> None:
        idle = self._idle.setdefault((upstream.host, upstream.port, upstream.tls), [])
        if len(idle) >= self._max_idle:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


async def read_head(reader: asyncio.StreamReader, method: str) -> ResponseHead:
    while True:
        head = await _read_head_bytes(reader)
        parsed = _parse_head(head)
        if parsed.status >= 200:
            break
        if parsed.status == 101:
            raise BadUpstream("the upstream switched protocols, which the gateway cannot proxy")
        # 1xx interim responses (100 Continue, 103 Early Hints) are dropped: RFC 9110 §15.2.
    return _framing(parsed, method)


async def _read_head_bytes(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise StaleConnection("the upstream closed the connection") from None
        raise BadUpstream("the upstream closed the connection mid-response") from None
    except asyncio.LimitOverrunError:
        raise BadUpstream("the upstream's response head is too large") from None
    except ssl.SSLError as exc:
        raise TlsRefused(tls_failure(exc)) from None
    except OSError:
        raise StaleConnection("the upstream connection failed") from None


class _Head:
    """A parsed response head, with the framing fields gathered in the same pass (this runs
    on every request: one loop over the fields, not one per question asked of them)."""

    __slots__ = ("codings", "connection", "headers", "lengths", "status", "version")

    def __init__(self, status: int, version: bytes) -> None:
        self.status = status
        self.version = version
        self.headers: list[tuple[bytes, bytes]] = []
        self.lengths: list[bytes] = []  # every Content-Length value
        self.codings: list[bytes] = []  # every Transfer-Encoding value
        self.connection: list[bytes] = []  # every Connection value


def _parse_head(head: bytes) -> _Head:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[1].isdigit():
        raise BadUpstream("the upstream sent a malformed status line")
    status = int(parts[1])
    if not 100 <= status <= 599:
        raise BadUpstream("the upstream sent an invalid status code")
    parsed = _Head(status, parts[0])
    headers = parsed.headers
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        # RFC 9112 §5.1: no whitespace before the colon; §5.2: obs-fold (a line starting
        # with whitespace) is refused: both leave `name` unequal to its stripped self.
        if not colon or not name or name != name.strip():
            raise BadUpstream("the upstream sent a malformed header")
        name = name.lower()
        value = value.strip(b" \t")
        headers.append((name, value))
        if name in _FRAMING_FIELDS:
            if name == b"content-length":
                parsed.lengths.append(value)
            elif name == b"transfer-encoding":
                parsed.codings.append(value)
            else:
                parsed.connection.append(value)
    return parsed


_FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding", b"connection"})


def _framing(parsed: _Head, method: str) -> ResponseHead:
    status, headers = parsed.status, parsed.headers
    tokens = b",".join(parsed.connection).lower()
    listed = connection_names(tokens) if tokens else ()
    keep_alive = parsed.version == b"HTTP/1.1" and b"close" not in tokens
    if method == "HEAD" or status in NO_BODY_STATUS:
        return ResponseHead(status, headers, "none", 0, keep_alive, listed)
    lengths = set(parsed.lengths)
    if parsed.codings:
        # RFC 9112 §6.3 (3): Transfer-Encoding wins over Content-Length; chunked must be last.
        codings = b",".join(parsed.codings)
        if codings.rsplit(b",", 1)[-1].strip().lower() == b"chunked":
            return ResponseHead(status, headers, "chunked", 0, keep_alive and not lengths, listed)
        return ResponseHead(status, headers, "close", 0, False, listed)
    if lengths:
        if len(lengths) != 1 or not (value := next(iter(lengths))).isdigit():
            raise BadUpstream("the upstream sent an invalid Content-Length")
        return ResponseHead(status, headers, "length", int(value), keep_alive, listed)
    return ResponseHead(status, headers, "close", 0, False, listed)


async def body_chunks(
    reader: asyncio.StreamReader, head: ResponseHead, read_timeout: float
) -> AsyncIterator[bytes]:
    """The response body as it arrives, de-chunked; each read bounded by `read_timeout`."""
    if head.framing == "none":
        return
    if head.framing == "length":
        chunks = _fixed(reader, head.length, read_timeout)
    elif head.framing == "chunked":
        chunks = _chunked(reader, read_timeout)
    else:
        chunks = _until_close(reader, read_timeout)
    try:
        async for data in chunks:
            yield data
    except TimeoutError:
        raise UpstreamTimeout("the upstream stopped sending the body") from None
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        raise BadUpstream("the upstream connection failed mid-body") from None


async def _fixed(
    reader: asyncio.StreamReader, remaining: int, read_timeout: float
) -> AsyncIterator[bytes]:
    while remaining:
        async with asyncio.timeout(read_timeout):
            data = await reader.read(min(remaining, CHUNK))
        if not data:
            raise BadUpstream("the upstream closed the connection mid-body")
        remaining -= len(data)
        yield data


async def _until_close(reader: asyncio.StreamReader, read_timeout: float) -> AsyncIterator[bytes]:
    while True:
        async with asyncio.timeout(read_timeout):
            data = await reader.read(CHUNK)
        if not data:
            return
        yield data


async def _chunked(reader: asyncio.StreamReader, read_timeout: float) -> AsyncIterator[bytes]:
    while True:
        async with asyncio.timeout(read_timeout):
            line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadUpstream("the upstream sent a malformed chunk size") from None
        if size_text.startswith((b"-", b"+", b"0x", b"0X")) or size < 0:
            raise BadUpstream("the upstream sent a malformed chunk size")
        if size == 0:
            await _skip_trailers(reader, read_timeout)
            return
        while size:
            async with asyncio.timeout(read_timeout):
                data = await reader.read(min(size, CHUNK))
            if not data:
                raise BadUpstream("the upstream closed the connection mid-chunk")
            size -= len(data)
            yield data
        async with asyncio.timeout(read_timeout):
            if await reader.readexactly(2) != b"\r\n":
                raise BadUpstream("the upstream sent a malformed chunk")


async def _skip_trailers(reader: asyncio.StreamReader, read_timeout: float) -> None:
    # Trailer fields are dropped: the ASGI response we produce does not carry them.
    while True:
        async with asyncio.timeout(read_timeout):
            if await reader.readuntil(b"\r\n") == b"\r\n":
                return
