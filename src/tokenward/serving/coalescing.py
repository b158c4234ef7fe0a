"""Coalesced writes: head and body of a small answer leave in one syscall.

uvicorn writes a response's head the moment the app sends `http.response.start` and the body
with the next message: two `send` syscalls for a small answer, where one would do. On loopback
each send also runs the receiver's TCP processing, so the second one is most of a small
answer's I/O cost (measured: a bare ASGI token endpoint on uvicorn, 142 -> 124 µs of CPU per
request; docs/performance.md). The transport here gathers the writes made during one event-loop
step and sends them together just after it. A big streamed body is unaffected (each chunk is
still written within the step that produced it). Used by the gateway and by `tokenward serve`.
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescingTransport:
    """A transport proxy that delays writes to the end of the current loop step."""

    __slots__ = ("_buffer", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._buffer.append(bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if not self._buffer:
            return
        data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
        self._buffer.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def flush(self) -> None:
        """Send what waits now (before the connection changes hands)."""
        self._flush()

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._buffer))

    def close(self) -> None:
        self._flush()  # what was written before close must still go out
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()  # likewise before the half-close (a refused head's answer)
        self._transport.write_eof()

    def abort(self) -> None:
        self._buffer.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def coalescing(base: type[Any]) -> type[asyncio.Protocol]:
    class Coalescing(base):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            loop = asyncio.get_running_loop()
            super().connection_made(CoalescingTransport(transport, loop))

    Coalescing.__name__ = f"Coalescing{base.__name__}"
    return Coalescing
