"""A process's share of shared rate limits: quota leases, spent without a round trip.

The shared bucket (GCRA in Redis, `store.redis_ratelimit`) hands a process a lease of K
requests in one atomic call; the process admits the next K requests for that key from its own
memory and asks again when they are spent. K adapts per key: it doubles while leases are used
up within `HORIZON` of being granted and halves when they are not, so a key seen rarely keeps
K = 1 (one round trip per request, exact) and a busy key costs a round trip every ~`HORIZON`.

The bound. Leased requests are counted in the shared bucket when granted, so leasing never
admits more than the bucket itself over time; what moves is *when* they are spent. At any
moment a process holds at most K - 1 unspent requests per key (one of each lease is spent at
once), so over any span of S seconds the requests admitted across P processes (workers x
gateways) are at most GCRA's own `requests + S/T` plus P x (K_max - 1), with
K_max = max(1, requests // LEASE_DIVISOR): at most 1 % of the limit per process, and exact
(K_max = 1) for limits below 2 x LEASE_DIVISOR. Unspent requests go back to the bucket with the
process's next lease for the key once the lease has expired (`TTL`), so a refusal caused by
requests held elsewhere is bounded the same way (P x (K_max - 1)); a process that stops or
forgets a key keeps its unspent requests out of the bucket until the bucket refills (errs
toward refusing, never toward admitting more).

A refusal is remembered for its `retry_after` (the bucket can only fill up by then), so a flood
of refused requests costs no round trips either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tokenward.core.ratelimits import RateDecision, RatePolicy

HORIZON = 0.05  # seconds: a busy key's leases are sized to last about this long
TTL = 1.0  # seconds a lease may be spent; then its remainder goes back with the next lease
LEASE_DIVISOR = 100  # K ≤ requests / LEASE_DIVISOR: a lease is at most 1 % of the limit


def max_lease(policy: RatePolicy) -> int:
    return max(1, policy.requests // LEASE_DIVISOR)


@dataclass(slots=True)
class Lease:
    """One key's share in this process. Times are this process's monotonic clock."""

    left: int = 0  # requests still to spend
    granted_at: float = -math.inf
    expires: float = -math.inf  # left must not be spent after this
    size: int = 1  # K for the next lease
    remaining: int = 0  # the bucket's remaining count when the lease was granted
    debt: float = 0.0  # the bucket's reset (seconds) when granted or refused
    refused_until: float = -math.inf  # a refusal stands until then
    retry_after: float = 0.0


class LeaseTable:
    """Per key leases, bounded by `max_keys` (past it, expired leases go first, then the
    oldest: forgetting one costs a round trip and keeps its remainder out of the bucket)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._leases: dict[str, Lease] = {}
        self._max_keys = max_keys

    def __len__(self) -> int:
        return len(self._leases)

    def spend(self, key: str, now: float) -> RateDecision | None:
        """A decision from what this process holds, or None: ask the bucket."""
        lease = self._leases.get(key)
        if lease is None:
            return None
        elapsed = now - lease.granted_at
        if lease.left > 0 and now < lease.expires:
            lease.left -= 1
            reset = max(0.0, lease.debt - elapsed)
            return RateDecision(True, lease.remaining + lease.left, reset, 0.0)
        if now < lease.refused_until:
            wait = lease.refused_until - now
            return RateDecision(False, 0, max(0.0, lease.debt - elapsed), wait)
        return None

    def request(self, key: str, policy: RatePolicy, now: float) -> tuple[int, int]:
        """(K to ask for, unspent requests to give back) for a key this process must ask the
        bucket about; the unspent ones are dropped here, whatever the answer."""
        lease = self._leases.get(key)
        if lease is None:
            return 1, 0
        returned = lease.left if now >= lease.expires else 0
        lease.left -= returned
        if now - lease.granted_at < HORIZON:
            size = min(lease.size * 2, max_lease(policy))
        else:
            size = max(1, lease.size // 2)
        lease.size = size
        return size, returned

    def granted(self, key: str, granted: int, remaining: int, debt: float, now: float) -> None:
        """The bucket granted `granted` ≥ 1 requests (`remaining`, `debt` after the grant)."""
        lease = self._lease(key, now)
        lease.left += granted
        lease.granted_at = now
        lease.expires = now + TTL
        lease.remaining = remaining
        lease.debt = debt
        lease.refused_until = -math.inf

    def refused(self, key: str, debt: float, retry_after: float, now: float) -> None:
        lease = self._lease(key, now)
        lease.granted_at = now
        lease.debt = debt
        lease.retry_after = retry_after
        lease.refused_until = now + retry_after

    def _lease(self, key: str, now: float) -> Lease:
        leases = self._leases
        lease = leases.get(key)
        if lease is None:
            if len(leases) >= self._max_keys:
                self._evict(now)
            lease = leases[key] = Lease()
        return lease

    def _evict(self, now: float) -> None:
        leases = self._leases
        spent = [
            key
            for key, lease in leases.items()
            if (lease.left == 0 or lease.expires <= now) and lease.refused_until <= now
        ]
        for key in spent:
            del leases[key]
        while len(leases) >= self._max_keys:
            del leases[next(iter(leases))]
