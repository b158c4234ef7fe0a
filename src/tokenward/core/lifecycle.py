"""What an owner starts and stops with itself: background tasks, followers, shared views, and
how a background task is stopped for sure."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol


class Background(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@contextlib.asynccontextmanager
async def running(background: Sequence[Background]) -> AsyncIterator[None]:
    """Start each in order and stop them in reverse; a start that fails stops those started
    before it (the later ones may depend on the earlier ones, never the other way round)."""
    started: list[Background] = []
    try:
        for item in background:
            await item.start()
            started.append(item)
        yield
    finally:
        for item in reversed(started):
            await item.stop()


async def cancel_and_wait(
    task: asyncio.Task[Any], *, within: float = 5.0, every: float = 0.1
) -> bool:
    """Cancel `task` and wait for it to end; True once it has.

    One `cancel()` is not always enough: when a cancellation lands just as an inner timeout
    fires (`asyncio.timeout`, which redis-py's blocking reads use), Python 3.11 may turn it
    into a TimeoutError the library then treats as "no data", and a `while True` loop goes on
    polling for ever -- a server that never exits on SIGTERM. So the cancellation is repeated
    every `every` seconds until the task ends, for at most `within` seconds; past that the task
    is left behind (False) rather than holding the shutdown. An error the task ended with is
    raised here, as awaiting it would.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(every, remaining))
    if not task.cancelled():
        task.result()
    return True
