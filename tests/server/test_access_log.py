"""`tokenward serve`'s buffered access log: the same text as the `tokenward.access` logger
through uvicorn's formatter, out within the flush interval, at once when the buffer is full, at
shutdown, and never an error for the server when the stream is gone."""

from __future__ import annotations

import asyncio
import io
import logging
import logging.config
import time

import pytest

from tokenward.server import access_log as access_module
from tokenward.server.access_log import AccessLog
from tokenward.server.outer import ACCESS_LOGGER, uvicorn_log_config

ARGS = ("127.0.0.1:5555", "POST", "/token", 200, 1.234)


def _through_logging(worker: int | None) -> str:
    """The line the `tokenward.access` logger prints with `tokenward serve`'s log config."""
    config = uvicorn_log_config(worker)
    formatter_config = config["formatters"]["default"]
    formatter = logging.config.DictConfigurator(config).configure_formatter(formatter_config)
    formatter.use_colors = False  # type: ignore[union-attr]  # uvicorn's formatter has it
    record = logging.LogRecord(
        ACCESS_LOGGER, logging.INFO, __file__, 1, '%s - "%s %s" %s %.1fms', ARGS, None
    )
    return formatter.format(record) + "\n"


@pytest.mark.parametrize("worker", [None, 1])
def test_the_line_is_the_loggers_line(worker: int | None) -> None:
    async def main() -> str:
        stream = io.StringIO()
        log = AccessLog(stream, worker=worker)
        log.write(*ARGS)
        log.flush()
        return stream.getvalue()

    assert asyncio.run(main()) == _through_logging(worker)


def test_written_within_the_interval_not_at_once() -> None:
    async def main() -> None:
        stream = io.StringIO()
        log = AccessLog(stream, flush_interval=0.05)
        log.write(*ARGS)
        log.write("127.0.0.1:5556", "GET", "/jwks", "-", 0.5)
        assert stream.getvalue() == ""
        deadline = time.monotonic() + 5
        while not stream.getvalue():
            assert time.monotonic() < deadline, "not flushed"
            await asyncio.sleep(0.01)
        lines = stream.getvalue().splitlines()
        assert len(lines) == 2
        assert lines[1].endswith('127.0.0.1:5556 - "GET /jwks" - 0.5ms')

    asyncio.run(main())


def test_a_full_buffer_is_written_at_once() -> None:
    async def main() -> None:
        stream = io.StringIO()
        log = AccessLog(stream, flush_interval=3600)
        for _ in range(access_module.MAX_BUFFERED - 1):
            log.write(*ARGS)
        assert stream.getvalue() == ""
        log.write(*ARGS)
        assert stream.getvalue().count("\n") == access_module.MAX_BUFFERED

    asyncio.run(main())


def test_a_closed_stream_loses_the_lines_not_the_server() -> None:
    async def main() -> None:
        stream = io.StringIO()
        log = AccessLog(stream)
        log.write(*ARGS)
        stream.close()
        log.flush()  # no error
        log.flush()  # nothing left

    asyncio.run(main())


def test_a_terminal_gets_uvicorns_colour() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    async def main() -> str:
        stream = Terminal()
        log = AccessLog(stream)
        log.write(*ARGS)
        log.flush()
        return stream.getvalue()

    assert asyncio.run(main()).startswith("\x1b[32mINFO\x1b[0m:     127.0.0.1:5555 - ")
