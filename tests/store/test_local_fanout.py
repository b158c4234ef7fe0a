"""The workers' revocation fan-out without Redis: a datagram from one worker wakes the others;
a worker that is not there (restarting) costs the sender nothing."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tokenward.store.local_fanout import LocalFanout

pytestmark = pytest.mark.anyio


async def test_a_worker_that_wrote_wakes_every_other_and_not_itself(tmp_path: Path) -> None:
    told = [asyncio.Event() for _ in range(3)]
    fanouts = [LocalFanout(tmp_path, index, 3) for index in range(3)]
    for fanout, event in zip(fanouts, told, strict=True):
        await fanout.start(event.set)
    try:
        fanouts[1].tell()
        async with asyncio.timeout(5):
            await told[0].wait()
            await told[2].wait()
        await asyncio.sleep(0)  # a datagram to itself would be readable by now
        assert not told[1].is_set()
    finally:
        for fanout in fanouts:
            await fanout.stop()
    assert not await asyncio.to_thread(os.listdir, tmp_path)  # each removed its socket


async def test_telling_a_missing_worker_does_not_fail(tmp_path: Path) -> None:
    alone = LocalFanout(tmp_path, 0, 2)
    alone.tell()  # not started: nothing to send from
    await alone.start(lambda: None)
    try:
        alone.tell()  # worker 1 is not there
    finally:
        await alone.stop()
