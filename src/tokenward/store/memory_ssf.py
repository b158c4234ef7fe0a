"""Shared Signals streams and their SET queues in memory: one process (tests, development, the
memory backend). Each queue holds at most `capacity` SETs; past that the oldest goes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from tokenward.core.records import SsfStream

QUEUE_CAPACITY = 10_000


class MemorySsfStreams:
    def __init__(self) -> None:
        self._streams: dict[str, SsfStream] = {}

    async def put(self, stream: SsfStream) -> None:
        self._streams[stream.stream_id] = stream

    async def get(self, stream_id: str) -> SsfStream | None:
        return self._streams.get(stream_id)

    async def list_all(self) -> Sequence[SsfStream]:
        return sorted(self._streams.values(), key=lambda stream: stream.created_at)

    async def delete(self, stream_id: str) -> bool:
        return self._streams.pop(stream_id, None) is not None


class MemorySetQueue:
    def __init__(self, capacity: int = QUEUE_CAPACITY) -> None:
        self._capacity = capacity
        self._queues: dict[str, OrderedDict[str, str]] = {}
        self.dropped = 0

    async def enqueue(self, stream_id: str, jti: str, token: str, now: float) -> None:
        queue = self._queues.setdefault(stream_id, OrderedDict())
        queue[jti] = token
        while len(queue) > self._capacity:
            queue.popitem(last=False)
            self.dropped += 1

    async def pending(self, stream_id: str, limit: int) -> tuple[list[tuple[str, str]], bool]:
        queue = self._queues.get(stream_id) or OrderedDict()
        items: list[tuple[str, str]] = []
        for jti, token in queue.items():
            if len(items) == limit:
                break
            items.append((jti, token))
        return items, len(queue) > len(items)

    async def ack(self, stream_id: str, jtis: Sequence[str]) -> int:
        queue = self._queues.get(stream_id)
        if queue is None:
            return 0
        return sum(1 for jti in jtis if queue.pop(jti, None) is not None)

    async def clear(self, stream_id: str) -> None:
        self._queues.pop(stream_id, None)
