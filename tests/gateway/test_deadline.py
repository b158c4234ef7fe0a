"""The hot-path timeout behaves like asyncio.timeout."""

from __future__ import annotations

import asyncio

import pytest

from tokenward.gateway.deadline import Deadline


def test_expiry_raises_timeout_and_fast_work_passes() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with Deadline(loop, 1.0):
            await asyncio.sleep(0)
        with pytest.raises(TimeoutError):
            async with Deadline(loop, 0.01):
                await asyncio.Event().wait()  # never set: only the deadline ends it
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0

    asyncio.run(main())


def test_an_outside_cancellation_is_not_swallowed() -> None:
    async def victim(started: asyncio.Event) -> None:
        async with Deadline(asyncio.get_running_loop(), 10.0):
            started.set()
            await asyncio.Event().wait()

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(victim(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
