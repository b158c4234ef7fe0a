"""Per-key time windows the detectors read: distinct members, sliding counts, EWMA rates.

Keys are namespaced strings (`tok:<jti>`, `sub:<subject>`, `ip:<address>`). `UsageWindows` is
the port; its backends are in store/: `memory_windows.MemoryWindows` (in process) and
`redis_windows.RedisWindows` (shared: sorted sets and hashes), which reproduces the memory one
call for call with the constants below. The memory backend bounds every map by `max_keys`: when
full, the least recently touched key is forgotten, so a flood of fresh tokens or addresses costs
memory up to a limit, not more.

EWMA baseline (`rate`): requests are counted in fixed buckets of `bucket` seconds. When a
bucket closes with count c, the baseline becomes `mean = alpha*c + (1-alpha)*mean`; the first
closed bucket sets it to c scaled up to a whole bucket (a key first seen 15 s before the end
of a 60 s bucket with 5 requests starts at 20; at most 10 times); each empty bucket in between
decays it by `(1-alpha)`. The open bucket's running count is compared with that baseline, so a
spike is caught while it happens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

MAX_MEMBERS = 64  # distinct members kept per key; beyond it the oldest go
MAX_HITS = 10_000  # timestamps kept per sliding-count key
MAX_GAP_BUCKETS = 10_000  # an idle key's baseline has decayed to nothing by then
MIN_SEEN_FRACTION = 0.1  # a first bucket seen for less than this counts as this much


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
