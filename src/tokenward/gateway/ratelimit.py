"""Rate limiting by GCRA (the generic cell rate algorithm), behind a small async Protocol.

Why GCRA rather than a sliding window: it keeps one float per key (the "theoretical arrival
time", TAT) instead of a window of timestamps or two counters, it is exact rather than an
approximation (a sliding-window counter interpolates between two fixed windows and can be off
by up to the previous window's share), and its state maps onto one Redis key updated by one
script, which the scale-out backend will need.

Semantics and accuracy: `requests` per `per` seconds as a sustained rate, exactly, with a burst
of up to the whole quota; after a burst, capacity comes back one request every `per/requests`
seconds (the emission interval T). So over any span of S seconds at most `requests + S/T`
requests pass: the long-run rate is exact, while one window of `per` seconds can see up to
2 * `requests` - 1 in the worst case (a full burst at its start, then the steady refill). A
sliding-window log would cap every window at `requests` exactly but keep `requests` timestamps
per key; a sliding-window counter keeps two counters but is itself an approximation.

The draft-ietf-httpapi-ratelimit-headers-10 fields are rendered here:
`RateLimit-Policy: "default";q=1000;w=3600` and `RateLimit: "default";r=999;t=4`.
"""

from __future__ import annotations

import math
from typing import Protocol

from tokenward.core.ratelimits import RateDecision, RatePolicy


class RateLimiter(Protocol):
    """One call per request. A Redis backend implements the same (atomic per key)."""

    async def acquire(self, key: str, policy: RatePolicy, now: float) -> RateDecision: ...


class MemoryRateLimiter:
    """GCRA state in a dict: key → TAT. Bounded: past `max_keys`, spent keys are swept first,
    then the oldest keys go (forgetting a key resets its limit, which errs towards the client;
    size `max_keys` above the number of active callers per window)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._tat: dict[str, float] = {}
        self._max_keys = max_keys

    def __len__(self) -> int:
        return len(self._tat)

    async def acquire(self, key: str, policy: RatePolicy, now: float) -> RateDecision:
        return self.acquire_sync(key, policy, now)

    def acquire_sync(self, key: str, policy: RatePolicy, now: float) -> RateDecision:
        interval = policy.per / policy.requests  # emission interval T
        tat = self._tat.get(key, now)
        tat = max(tat, now)
        new_tat = tat + interval
        # Admit while the debt after this request fits in the window (burst = whole quota).
        if new_tat - now > policy.per + interval * 1e-6:  # tolerance: float rounding only
            retry = new_tat - now - policy.per
            return RateDecision(False, 0, tat - now, retry)
        tats = self._tat
        if key not in tats and len(tats) >= self._max_keys:
            self._evict(now)
        tats[key] = new_tat
        remaining = int((policy.per - (new_tat - now)) / interval + 1e-9)
        return RateDecision(True, remaining, new_tat - now, 0.0)

    def _evict(self, now: float) -> None:
        tats = self._tat
        for key in [key for key, tat in tats.items() if tat <= now]:
            del tats[key]  # a TAT in the past is the same as no state at all
        while len(tats) >= self._max_keys:
            del tats[next(iter(tats))]


def policy_header(policy: RatePolicy) -> bytes:
    window = math.ceil(policy.per)
    return f'"{_item(policy.name)}";q={policy.requests};w={window}'.encode("ascii")


def state_header(policy: RatePolicy, decision: RateDecision) -> bytes:
    return b'"%s";r=%d;t=%d' % (
        _item(policy.name).encode("ascii"),
        decision.remaining,
        math.ceil(decision.reset),
    )


def state_prefix(policy: RatePolicy) -> bytes:
    """`"name";r=` for a policy: computed once per config, the rest per request."""
    return b'"%s";r=' % _item(policy.name).encode("ascii")


def retry_after(decision: RateDecision) -> bytes:
    # RFC 9110 §10.2.3 delay-seconds: an integer, rounded up so the retry is not refused again.
    return str(max(1, math.ceil(decision.retry_after - 1e-9))).encode("ascii")


def _item(name: str) -> str:
    # Policy names are config strings; keep them inside an sf-string.
    return "".join(ch for ch in name if " " <= ch <= "~" and ch not in '"\\')
