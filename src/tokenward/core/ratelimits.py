"""Rate-limit value types shared by the limiter backends (memory in the gateway, Redis in
store/), so the storage layer does not depend on the gateway that uses it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class RatePolicy:
    name: str
    requests: int
    per: float  # seconds
    key: str  # what is limited: token, subject, client or ip
    # The implicit default limit, which nobody asked for: with the shared store unreachable it
    # is counted in the process's memory (per node) rather than turning every route into 503.
    best_effort: bool = False


class RateDecision(NamedTuple):
    """A NamedTuple: built on every request, and a frozen dataclass costs 3x to construct."""

    allowed: bool
    remaining: int  # requests that would be admitted right now
    reset: float  # seconds until the whole quota is available again
    retry_after: float  # seconds until the next request may pass; 0 when allowed
