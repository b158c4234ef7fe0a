"""Timing helpers for a noisy 2-core machine: interleaved rounds, medians of per-round ratios."""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Figure:
    """One summary line: `P1: 1.42 (ES256 cold, ×PyJWT; 1.15× raw verify)`."""

    name: str
    value: float
    unit: str
    details: list[str] = field(default_factory=list)

    def line(self) -> str:
        extra = "; ".join(self.details)
        return f"{self.name}: {self.value:.2f} ({self.unit}{'; ' + extra if extra else ''})"


def time_batch(run: Callable[[], int]) -> float:
    """Seconds per operation of one batch; `run` returns how many operations it did."""
    gc.collect()
    start = time.perf_counter()
    count = run()
    return (time.perf_counter() - start) / count


def interleaved(contenders: dict[str, Callable[[], int]], rounds: int) -> dict[str, list[float]]:
    """Run each contender once per round, in turn, so drift and noise hit all of them alike."""
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            results[name].append(time_batch(run))
    return results


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    return statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def load_note() -> str:
    """What the machine was doing, for a figure's line: its load average, not an assumption."""
    return f"load average {os.getloadavg()[0]:.2f} at the end of the run, 2 cores"
