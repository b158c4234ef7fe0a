"""Stopping a background task for sure: `core.lifecycle.cancel_and_wait`."""

from __future__ import annotations

import asyncio

import pytest

from tokenward.core.lifecycle import cancel_and_wait


def test_a_task_that_swallows_one_cancellation_is_still_stopped() -> None:
    """The shape of the bug it exists for: a poll loop whose inner timeout turned the
    cancellation into "no data" (redis-py's blocking XREADGROUP under Python 3.11)."""
    swallowed = 0

    async def poll_for_ever() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as `asyncio.timeout` does when both land in one turn

    async def main() -> bool:
        task = asyncio.create_task(poll_for_ever())
        await asyncio.sleep(0.02)
        stopped = await cancel_and_wait(task, within=5)
        return stopped and task.cancelled()

    assert asyncio.run(main()) is True
    assert swallowed == 1


def test_a_task_that_never_ends_is_left_behind_within_the_bound() -> None:
    refusing = True

    async def stubborn() -> None:
        while refusing:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue

    async def main() -> tuple[bool, float]:
        nonlocal refusing
        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0.02)  # inside its loop: a task cancelled before it ran just ends
        loop = asyncio.get_running_loop()
        began = loop.time()
        stopped = await cancel_and_wait(task, within=0.3, every=0.05)
        took = loop.time() - began
        refusing = False  # let it end, so the loop closes cleanly
        await asyncio.wait({task})
        return stopped, took

    stopped, took = asyncio.run(main())
    assert stopped is False
    assert 0.3 <= took < 2.0


def test_the_error_a_task_ended_with_is_raised() -> None:
    async def failing() -> None:
        raise RuntimeError("boom")

    async def main() -> None:
        task = asyncio.create_task(failing())
        await asyncio.sleep(0)
        await cancel_and_wait(task)

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(main())


def test_a_finished_task_is_not_waited_for() -> None:
    async def main() -> bool:
        task = asyncio.create_task(asyncio.sleep(0))
        await task
        return await cancel_and_wait(task, within=0)

    assert asyncio.run(main()) is True
