"""Poll delivery (RFC 8936) on its own: long polls woken by a SET queued here, finding one
queued by another node on the next re-read, bounded in number, and the request checked."""

from __future__ import annotations

import time

import anyio
import pytest

from tokenward.core.records import SsfStream
from tokenward.oauth.ssf import poll as poll_module
from tokenward.oauth.ssf.poll import PollEndpoint
from tokenward.oauth.ssf.streams import POLL, StreamError
from tokenward.oauth.ssf.transmitter import PollWakeups
from tokenward.store.memory_ssf import MemorySetQueue

pytestmark = pytest.mark.anyio
STREAM = SsfStream("s-1", "rx", "rx", (), POLL, "https://as.example/ssf/poll/s-1", 1.0)


async def test_a_long_poll_is_woken_by_a_set_queued_here() -> None:
    queue, wakeups = MemorySetQueue(), PollWakeups()
    endpoint = PollEndpoint(queue, wakeups, max_wait=10)
    answers = []

    async def poll() -> None:
        answers.append(await endpoint.poll(STREAM, {}))

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(poll)
        await anyio.sleep(0.05)
        await queue.enqueue("s-1", "j1", "set-1", 1.0)
        wakeups.wake("s-1")

    assert answers == [{"sets": {"j1": "set-1"}, "moreAvailable": False}]
    assert time.monotonic() - started < 0.5


async def test_a_set_queued_by_another_node_is_found_on_the_next_read() -> None:
    queue = MemorySetQueue()
    endpoint = PollEndpoint(queue, PollWakeups(), max_wait=10)
    answers = []

    async def poll() -> None:
        answers.append(await endpoint.poll(STREAM, {"maxEvents": 5}))

    async with anyio.create_task_group() as group:
        group.start_soon(poll)
        await anyio.sleep(0.05)
        await queue.enqueue("s-1", "j1", "set-1", 1.0)  # no wake-up: another node did it

    assert answers == [{"sets": {"j1": "set-1"}, "moreAvailable": False}]


async def test_long_polls_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poll_module, "MAX_WAITERS", 1)
    endpoint = PollEndpoint(MemorySetQueue(), PollWakeups(), max_wait=0.5)
    answered_at: list[float] = []

    async def poll() -> None:
        await endpoint.poll(STREAM, {})
        answered_at.append(time.monotonic())

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(poll)
        await anyio.sleep(0.05)
        group.start_soon(poll)  # no room: answered at once

    first_back, second_back = sorted(answered_at)
    assert first_back - started < 0.3
    assert second_back - started >= 0.5


@pytest.mark.parametrize(
    "body",
    [
        {"maxEvents": -1},
        {"maxEvents": True},
        {"returnImmediately": "yes"},
        {"ack": "j1"},
        {"ack": [1]},
        {"setErrs": []},
        {"ack": [f"j{n}" for n in range(1001)]},
    ],
)
async def test_a_malformed_poll_is_a_400(body: dict[str, object]) -> None:
    endpoint = PollEndpoint(MemorySetQueue(), PollWakeups())

    with pytest.raises(StreamError) as refused:
        await endpoint.poll(STREAM, body)

    assert refused.value.status == 400


async def test_set_errors_are_acknowledged_and_max_events_zero_only_acknowledges() -> None:
    queue = MemorySetQueue()
    for jti in ("j1", "j2"):
        await queue.enqueue("s-1", jti, jti, 1.0)
    endpoint = PollEndpoint(queue, PollWakeups())

    answer = await endpoint.poll(
        STREAM, {"maxEvents": 0, "setErrs": {"j1": {"err": "invalid_key", "description": "?"}}}
    )

    assert answer == {"sets": {}, "moreAvailable": True}
    assert await queue.pending("s-1", 10) == ([("j2", "j2")], False)
