"""`tokenward serve`'s access log: the line Outer prints, written by hand and buffered.

Through `logging` the line cost about 80 µs of a 360 µs client_credentials token on the running
server (record, uvicorn's formatter, a write and flush per line; docs/performance.md). Here a
line is one f-string appended to a buffer that is written out at most `flush_interval` seconds
later (0.5 s, as the gateway's audit log), at once when `MAX_BUFFERED` lines wait, and at
shutdown: a hard kill can lose up to half a second of lines. The text is the same as the
`tokenward.access` logger's through uvicorn's default formatter, which stays the sink of an
app built without this writer (tests, programs that embed the server app).
"""

from __future__ import annotations

import asyncio
from typing import TextIO

MAX_BUFFERED = 512  # lines; bounds the memory a burst holds between flushes
_GREEN = "\x1b[32m{}\x1b[0m"  # uvicorn's colour for INFO, used when the stream is a terminal


class AccessLog:
    """One line per response on `stream`; `worker`: the `serve --workers` index it names."""

    def __init__(
        self, stream: TextIO, *, worker: int | None = None, flush_interval: float = 0.5
    ) -> None:
        self._stream = stream
        self._flush_interval = flush_interval
        level = _GREEN.format("INFO") if _is_terminal(stream) else "INFO"
        # uvicorn's "%(levelprefix)s %(message)s": the level, a colon, padding to 9, a space.
        self._prefix = f"{level}:{' ' * 4} " + (f"[worker {worker}] " if worker is not None else "")
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def write(self, client: str, method: str, path: str, status: int | str, ms: float) -> None:
        self._lines.append(f'{self._prefix}{client} - "{method} {path}" {status} {ms:.1f}ms\n')
        if len(self._lines) >= MAX_BUFFERED:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_interval, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        text, self._lines = "".join(self._lines), []
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # stdout closed or gone: the log is lost, the server keeps serving


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
