"""RevocationPublisher's bounds over a fake log: shared reads, waiter cap, shutdown, hang-ups."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from tokenward.core.records import Revocation
from tokenward.oauth.errors import TemporarilyUnavailable
from tokenward.oauth.revocation_publisher import FeedQuery, RevocationPublisher

pytestmark = pytest.mark.anyio


class FakeLog:
    """A log whose reads can be held open, counting them."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, Revocation]] = []
        self.reads = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self._changed = asyncio.Event()

    async def page(
        self, after: int, now: float, limit: int
    ) -> tuple[int, Sequence[tuple[int, Revocation]]]:
        self.reads += 1
        snapshot = len(self.entries), [e for e in self.entries if e[0] > after][:limit]
        await self.gate.wait()  # what it returns was read when it started
        return snapshot

    def changed(self) -> asyncio.Event:
        return self._changed

    def add(self, value: str) -> int:
        seq = len(self.entries) + 1
        self.entries.append((seq, Revocation("jti", value, None, time.time() + 60)))
        self._changed.set()
        self._changed = asyncio.Event()
        return seq


async def test_identical_concurrent_reads_share_one_query() -> None:
    log = FakeLog()
    log.gate.clear()
    publisher = RevocationPublisher(log)
    answers = [asyncio.create_task(publisher.answer(FeedQuery())) for _ in range(50)]
    await asyncio.sleep(0.05)
    log.gate.set()
    bodies = await asyncio.gather(*answers)
    assert log.reads == 1
    assert all(body["head"] == 0 for body in bodies)


async def test_a_read_that_started_before_a_change_is_not_shared_after_it() -> None:
    """A long-poll woken by a change must see that change, not join an older read."""
    log = FakeLog()
    publisher = RevocationPublisher(log)
    held = asyncio.create_task(publisher.answer(FeedQuery(wait=10)))
    await asyncio.sleep(0.05)
    log.gate.clear()
    stale = asyncio.create_task(publisher.answer(FeedQuery()))  # in flight, before the change
    await asyncio.sleep(0.05)
    log.add("new")
    await asyncio.sleep(0.05)
    log.gate.set()
    assert (await stale)["head"] == 0
    body = await asyncio.wait_for(held, 2)
    assert [entry["seq"] for entry in body["entries"]] == [1]


async def test_long_polls_beyond_the_cap_are_answered_at_once_with_a_retry_hint() -> None:
    log = FakeLog()
    publisher = RevocationPublisher(log, max_waiters=1)
    first = asyncio.create_task(publisher.answer(FeedQuery(wait=10)))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    body = await publisher.answer(FeedQuery(wait=10))
    assert time.monotonic() - started < 2
    assert body["retry"] == 2
    log.add("wakes the first")
    assert (await asyncio.wait_for(first, 2))["next"] == 1


async def test_close_releases_every_long_poll_and_holds_no_new_one() -> None:
    publisher = RevocationPublisher(FakeLog())
    held = [asyncio.create_task(publisher.answer(FeedQuery(wait=20))) for _ in range(3)]
    await asyncio.sleep(0.05)
    started = time.monotonic()
    publisher.close()
    await asyncio.wait_for(asyncio.gather(*held), 1)
    assert (await publisher.answer(FeedQuery(wait=20)))["entries"] == []
    assert time.monotonic() - started < 2


async def test_a_caller_that_hangs_up_ends_its_long_poll() -> None:
    gone = asyncio.Event()
    publisher = RevocationPublisher(FakeLog(), max_waiters=1)
    held = asyncio.create_task(publisher.answer(FeedQuery(wait=20), gone.wait))
    await asyncio.sleep(0.05)
    gone.set()
    await asyncio.wait_for(held, 1)
    # Its place is free again.
    again = asyncio.create_task(publisher.answer(FeedQuery(wait=20)))
    await asyncio.sleep(0.05)
    assert not again.done()
    again.cancel()


async def test_distinct_reads_queue_for_a_bounded_number_of_slots_then_503() -> None:
    log = FakeLog()
    log.gate.clear()
    publisher = RevocationPublisher(log, read_slots=1, queue_timeout=0.1)
    first = asyncio.create_task(publisher.answer(FeedQuery(after=0)))
    await asyncio.sleep(0.02)
    with pytest.raises(TemporarilyUnavailable) as refused:
        await publisher.answer(FeedQuery(after=1))
    assert refused.value.headers["retry-after"] == "2"
    log.gate.set()
    await first
