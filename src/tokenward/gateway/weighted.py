"""Smooth weighted round robin (nginx's `ngx_http_upstream_get_peer`): deterministic, and it
spreads each upstream's picks evenly through the cycle instead of in bursts. With weights 3:1
every 4 picks give the first upstream 3 and the second 1 (a, a, b, a ...), at any scale.

Routes and groups whose upstreams all weigh 1 never come here: plain round robin stays their
hot path (gateway/proxy.py `Balancer`, gateway/traffic.py `Group`).
"""

from __future__ import annotations

MIN_WEIGHT = 1  # 0 is refused: to drain an upstream, health checks or removing it say so
MAX_WEIGHT = 1000


class SmoothWeighted:
    """Picks indexes 0..n-1 in proportion to their weights; one instance per upstream list."""

    __slots__ = ("_current", "_total", "_weights")

    def __init__(self, weights: tuple[int, ...]) -> None:
        if not weights or any(not MIN_WEIGHT <= w <= MAX_WEIGHT for w in weights):
            raise ValueError(f"weights must be {MIN_WEIGHT} to {MAX_WEIGHT}, at least one")
        self._weights = weights
        self._current = [0] * len(weights)
        self._total = sum(weights)

    def pick(self) -> int:
        # Every index gains its weight; the one furthest ahead is picked and pays the total
        # back. Over a cycle of `total` picks each index is picked exactly `weight` times.
        current = self._current
        best = 0
        for index, weight in enumerate(self._weights):
            current[index] += weight
            if current[index] > current[best]:
                best = index
        current[best] -= self._total
        return best


def weights_or_none(weights: tuple[int, ...]) -> tuple[int, ...] | None:
    """None when every weight is 1: such lists keep the plain round robin."""
    return None if all(weight == 1 for weight in weights) else weights
