"""Per-key time windows the detectors read: distinct members, sliding counts, EWMA rates.

Keys are namespaced strings (`tok:<jti>`, `sub:<subject>`, `ip:<address>`). `UsageWindows` is
the Protocol a shared backend (Redis: sorted sets and hashes) implements; `MemoryWindows` is
the in-process one. Every map is bounded by `max_keys`: when full, the least recently touched
key is forgotten, so a flood of fresh tokens or addresses costs memory up to a limit, not more.

EWMA baseline (`rate`): requests are counted in fixed buckets of `bucket` seconds. When a
bucket closes with count c, the baseline becomes `mean = alpha*c + (1-alpha)*mean`; the first
closed bucket sets it to c scaled up to a whole bucket (a key first seen 15 s before the end
of a 60 s bucket with 5 requests starts at 20; at most 10 times); each empty bucket in between
decays it by `(1-alpha)`. The open bucket's running count is compared with that baseline, so a
spike is caught while it happens.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

MAX_MEMBERS = 64  # distinct members kept per key; beyond it the oldest go
MAX_HITS = 10_000  # timestamps kept per sliding-count key
MAX_GAP_BUCKETS = 10_000  # an idle key's baseline has decayed to nothing by then
MIN_SEEN_FRACTION = 0.1  # a first bucket seen for less than this counts as this much
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class RateSample:
    count: int  # requests in the open bucket, this one included
    baseline: float  # EWMA of closed buckets (requests per bucket)
    closed: int  # how many closed buckets the baseline has seen


class UsageWindows(Protocol):
    async def spread(self, key: str, member: str, now: float, window: float) -> Sequence[str]:
        """Record `member` for `key`; the distinct members seen within `window`, newest last."""
        ...

    async def burst(self, key: str, now: float, window: float, count: int = 1) -> int:
        """Record `count` hits for `key`; the hits within the last `window` seconds."""
        ...

    async def rate(
        self, key: str, now: float, bucket: float, alpha: float, count: int = 1
    ) -> RateSample:
        """Record `count` requests for `key`; its open bucket's count and EWMA baseline."""
        ...


def network_of(ip: str, group: str, ipv4_prefix: int = 24, ipv6_prefix: int = 64) -> str:
    """The address itself (`group="ip"`) or its network (`/24` IPv4, `/64` IPv6 by default)."""
    try:
        address = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if group == "ip":
        return str(address)
    prefix = ipv4_prefix if address.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


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
