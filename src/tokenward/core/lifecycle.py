"""What an owner starts and stops with itself: background tasks, followers, shared views."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Protocol


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
