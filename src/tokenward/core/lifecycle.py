"""What an owner starts and stops with itself: background tasks, followers, shared views."""

from __future__ import annotations

from typing import Protocol


class Background(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...
