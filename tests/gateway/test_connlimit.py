"""Per-upstream connection limits: a bounded number in flight, a bounded queue with a bounded
wait, and slots handed from one request to the next waiter."""

from __future__ import annotations

import asyncio

from tokenward.gateway.connlimit import Slots


def test_beyond_the_limit_with_no_room_to_wait_is_refused_at_once() -> None:
    async def main() -> None:
        slots = Slots(2, 0, 1.0)
        assert await slots.take()
        assert await slots.take()
        assert not await slots.take()
        slots.give()
        assert await slots.take()
        assert slots.in_use == 2

    asyncio.run(main())


def test_a_waiter_gets_the_slot_given_back() -> None:
    async def main() -> None:
        slots = Slots(1, 1, 5.0)
        assert await slots.take()
        waiting = asyncio.create_task(slots.take())
        await asyncio.sleep(0)  # one turn of the loop: the waiter queues up
        assert len(slots.waiters) == 1
        assert not await slots.take()  # the one waiting place is taken
        slots.give()
        assert await waiting
        assert slots.in_use == 1  # handed over, never freed in between
        slots.give()
        assert slots.in_use == 0

    asyncio.run(main())


def test_a_wait_is_bounded() -> None:
    async def main() -> None:
        slots = Slots(1, 4, 0.01)
        assert await slots.take()
        assert not await slots.take()
        assert not slots.waiters  # the timed-out waiter left the queue
        assert slots.in_use == 1

    asyncio.run(main())


def test_a_cancelled_waiter_passes_a_handed_slot_on() -> None:
    async def main() -> None:
        slots = Slots(1, 2, 5.0)
        assert await slots.take()
        first = asyncio.create_task(slots.take())
        second = asyncio.create_task(slots.take())
        await asyncio.sleep(0)
        assert len(slots.waiters) == 2
        first.cancel()
        slots.give()  # the first waiter's future is done: handed to the second
        assert await second
        assert first.cancelled()
        assert slots.in_use == 1

    asyncio.run(main())
