"""An app's usage as an inline SVG bar chart, laid out here and drawn by the template: no
script and no chart library, so the portal's pages need nothing but their stylesheet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 600, 120


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    allow_y: float
    allow_height: float
    deny_y: float
    deny_height: float
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    bars: tuple[Bar, ...]
    allowed: int
    denied: int
    peak: int
    width: int = WIDTH
    height: int = HEIGHT


def usage_chart(series: Sequence[dict[str, float]]) -> Chart:
    """One stacked bar per bucket: allowed requests below, refused ones above."""
    peak = max((int(p["allow"] + p["deny"]) for p in series), default=0)
    scale = HEIGHT / peak if peak else 0.0
    step = WIDTH / len(series) if series else WIDTH
    bars = []
    for i, point in enumerate(series):
        allow, deny = int(point["allow"]), int(point["deny"])
        allow_height, deny_height = allow * scale, deny * scale
        bars.append(
            Bar(
                x=round(i * step, 2),
                width=round(max(step - 1, 1), 2),
                allow_y=round(HEIGHT - allow_height, 2),
                allow_height=round(allow_height, 2),
                deny_y=round(HEIGHT - allow_height - deny_height, 2),
                deny_height=round(deny_height, 2),
                title=f"{allow} allowed, {deny} refused",
            )
        )
    return Chart(
        bars=tuple(bars),
        allowed=sum(int(p["allow"]) for p in series),
        denied=sum(int(p["deny"]) for p in series),
        peak=peak,
    )
