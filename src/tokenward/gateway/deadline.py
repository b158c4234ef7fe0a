"""A timeout for the hot path: `asyncio.timeout` without its per-use loop and task lookups.

`asyncio.timeout()` finds the running loop and the current task on every use; in CPython 3.11
each lookup checks the process id with a `getpid` system call, and system calls are the
dominant cost of this proxy (docs/gateway.md). Here the loop is given and the task looked up
against it, which needs no such check. Same semantics: on expiry the task is cancelled, the
cancellation is absorbed and TimeoutError raised instead.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Deadline:
    __slots__ = ("_cancelled", "_handle", "_loop", "_seconds")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self._loop = loop
        self._seconds = seconds
        self._handle: asyncio.TimerHandle | None = None
        self._cancelled: asyncio.Task[object] | None = None  # the task, once expiry cancelled it

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        self._handle = self._loop.call_later(self._seconds, self._expire, task)
        return self

    def _expire(self, task: asyncio.Task[object]) -> None:
        self._cancelled = task
        task.cancel()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
        task = self._cancelled
        if task is not None and kind is asyncio.CancelledError and task.uncancel() == 0:
            raise TimeoutError from error
