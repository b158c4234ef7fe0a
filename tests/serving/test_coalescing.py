"""Coalesced writes: what one event-loop step writes leaves in one write, in order, and nothing
written is lost at close or half-close. `tokenward serve` and the gateway both serve with it."""

from __future__ import annotations

import asyncio
from typing import Any

from tokenward.deploy.serve import _protocol_wrap
from tokenward.serving.coalescing import CoalescingTransport, coalescing


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        self.events.append("write")

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def write_eof(self) -> None:
        self.events.append("eof")

    def abort(self) -> None:
        self.closing = True
        self.events.append("abort")

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555)}.get(name, default)


async def _step() -> None:
    await asyncio.sleep(0)


def test_head_and_body_written_in_one_step_leave_in_one_write() -> None:
    async def main() -> None:
        inner = Recording()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"ok")
        transport.write(b"")  # nothing to send adds nothing
        assert inner.writes == []  # not before the step ends
        assert transport.get_write_buffer_size() == 40
        await _step()
        assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
        transport.write(b"next")  # a later step: its own write
        await _step()
        assert inner.writes[1:] == [b"next"]

    asyncio.run(main())


def test_close_and_half_close_send_what_was_written_first_abort_drops_it() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        inner = Recording()
        transport = CoalescingTransport(inner, loop)
        transport.write(b"answer")
        transport.write_eof()
        assert inner.events == ["write", "eof"]
        transport.write(b"last")
        transport.close()
        assert inner.events[-2:] == ["write", "close"]
        assert inner.writes == [b"answer", b"last"]
        await _step()  # the flush scheduled for the step finds nothing left
        assert inner.writes == [b"answer", b"last"]

        dropped = Recording()
        aborted = CoalescingTransport(dropped, loop)
        aborted.write(b"never")
        aborted.abort()
        await _step()
        assert dropped.events == ["abort"]
        assert aborted.get_extra_info("peername") == ("127.0.0.1", 5555)  # the rest passes

    asyncio.run(main())


def test_tokenward_serve_answers_through_coalesced_writes_with_or_without_certificates() -> None:
    class Base(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

    async def main() -> None:
        for certificates in (False, True):
            protocol = _protocol_wrap(certificates=certificates)(Base)()
            protocol.connection_made(Recording())
            assert isinstance(protocol.transport, CoalescingTransport)
        assert _protocol_wrap(certificates=False) is coalescing

    asyncio.run(main())
