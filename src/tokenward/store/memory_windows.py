"""`UsageWindows` in this process (the semantics, EWMA included, are in `core.windows`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TypeVar

from tokenward.core.windows import (
    MAX_GAP_BUCKETS,
    MAX_HITS,
    MAX_MEMBERS,
    MIN_SEEN_FRACTION,
    RateSample,
)

V = TypeVar("V")


class _Rate:
    __slots__ = ("bucket", "closed", "count", "first", "mean")

    def __init__(self, bucket: int, first: float) -> None:
        self.bucket = bucket
        self.first = first  # when the key was first seen: its first bucket is only partly seen
        self.count = 0
        self.mean = 0.0
        self.closed = 0

    def advance(self, bucket: int, size: float, alpha: float) -> None:
        if bucket <= self.bucket:
            return
        if self.closed == 0:  # scale the partial first bucket up to a whole one
            seen = ((self.bucket + 1) * size - self.first) / size
            self.mean = self.count / max(seen, MIN_SEEN_FRACTION)
        else:
            self.mean = alpha * self.count + (1.0 - alpha) * self.mean
        gap = min(bucket - self.bucket - 1, MAX_GAP_BUCKETS)
        if gap:
            self.mean *= (1.0 - alpha) ** gap
        self.closed += 1 + gap
        self.bucket = bucket
        self.count = 0


class _Hits:
    """(time, count) pairs of one key, oldest first, with their running total."""

    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: deque[tuple[float, int]] = deque()
        self.total = 0

    def add(self, now: float, count: int, window: float) -> int:
        entries = self.entries
        entries.append((now, count))
        self.total += count
        cutoff = now - window
        while entries and (entries[0][0] <= cutoff or len(entries) > MAX_HITS):
            self.total -= entries.popleft()[1]
        return self.total


class MemoryWindows:
    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._members: dict[str, dict[str, float]] = {}
        self._hits: dict[str, _Hits] = {}
        self._rates: dict[str, _Rate] = {}

    async def spread(self, key: str, member: str, now: float, window: float) -> Sequence[str]:
        members = self._touch(self._members, key, dict)
        members.pop(member, None)
        members[member] = now  # insertion order = last seen order
        cutoff = now - window
        while members:  # insertion order is last-seen order: the stale ones are in front
            oldest = next(iter(members))
            if members[oldest] > cutoff:
                break
            del members[oldest]
        while len(members) > MAX_MEMBERS:
            del members[next(iter(members))]
        return list(members)

    async def burst(self, key: str, now: float, window: float, count: int = 1) -> int:
        hits = self._touch(self._hits, key, _Hits)
        return hits.add(now, count, window)

    async def rate(
        self, key: str, now: float, bucket: float, alpha: float, count: int = 1
    ) -> RateSample:
        index = int(now // bucket)
        state = self._touch(self._rates, key, lambda: _Rate(index, now))
        state.advance(index, bucket, alpha)
        state.count += count
        return RateSample(state.count, state.mean, state.closed)

    def __len__(self) -> int:
        return len(self._members) + len(self._hits) + len(self._rates)

    def _touch(self, table: dict[str, V], key: str, new: Callable[[], V]) -> V:
        value = table.pop(key, None)
        if value is None:
            value = new()
            if len(table) >= self.max_keys:
                del table[next(iter(table))]  # least recently touched
        table[key] = value
        return value
