"""Chart geometry for the HTML reports, drawn by the templates as inline SVG (no scripts, no
external resources: the page opens offline). Pure: numbers in, shapes out; the templates escape
every label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Colour per category, chosen to read in greyscale print too (light to dark).
PALETTE = {
    "patched": "#15803d",
    "compliant": "#15803d",
    "due soon": "#d97706",
    "skipped": "#a3a3a3",
    "not started": "#d4d4d4",
    "incomplete": "#fbbf24",
    "rolled back": "#f59e0b",
    "failed": "#b91c1c",
    "unreachable": "#7f1d1d",
    "rollback failed": "#450a0a",
    "overdue": "#b91c1c",
    "excepted": "#9ca3af",
}
OTHER = "#6b7280"


@dataclass(frozen=True)
class Segment:
    x: float
    width: float
    colour: str
    title: str  # the tooltip: "category: count"


@dataclass(frozen=True)
class Bar:
    y: float
    label: str
    total: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class LegendItem:
    x: float
    colour: str
    label: str


@dataclass(frozen=True)
class BarChart:
    """Horizontal stacked bars, one per row, scaled to the largest row."""

    title: str
    width: int
    height: int
    label_width: int
    bars: tuple[Bar, ...]
    legend: tuple[LegendItem, ...]
    bar_height: int = 18


def stacked_bars(
    title: str,
    rows: Sequence[tuple[str, Mapping[str, int]]],
    order: Sequence[str],
    *,
    width: int = 640,
    label_width: int = 110,
) -> BarChart:
    """One bar per ``(label, {category: count})``; categories stacked in ``order``, then any
    others alphabetically."""
    seen = {c for _, counts in rows for c, n in counts.items() if n}
    categories = [c for c in order if c in seen] + sorted(seen - set(order))
    biggest = max((sum(counts.values()) for _, counts in rows), default=0) or 1
    room = width - label_width - 40  # the total is written after the bar
    bars = []
    for index, (label, counts) in enumerate(rows):
        x = float(label_width)
        segments = []
        for category in categories:
            n = counts.get(category, 0)
            if not n:
                continue
            w = room * n / biggest
            segments.append(Segment(x, w, PALETTE.get(category, OTHER), f"{category}: {n}"))
            x += w
        bars.append(Bar(30 + index * 26, label, sum(counts.values()), tuple(segments)))
    legend = []
    x = 0.0
    for category in categories:
        legend.append(LegendItem(x, PALETTE.get(category, OTHER), category))
        x += 22 + 7 * len(category)
    height = 30 + len(rows) * 26 + 4
    return BarChart(title, width, height, label_width, tuple(bars), tuple(legend))


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class LineChart:
    """Values over time (or any ordered labels), with the y axis from 0 to the largest value."""

    title: str
    width: int
    height: int
    unit: str
    top: float  # the value at the top of the plot
    points: tuple[Point, ...]
    ticks: tuple[tuple[float, str, str], ...]  # (x, label, text-anchor) under the plot

    @property
    def path(self) -> str:
        return " ".join(
            f"{'M' if i == 0 else 'L'}{p.x:.1f},{p.y:.1f}" for i, p in enumerate(self.points)
        )


def line(
    title: str,
    values: Sequence[tuple[str, float]],
    *,
    unit: str = "",
    width: int = 640,
    height: int = 200,
) -> LineChart:
    """A polyline through ``(label, value)`` in order; 50 px left for the axis, 50 px right and
    40 below for the labels."""
    top = max((v for _, v in values), default=0.0) or 1.0
    plot_w, plot_h = width - 100, height - 50
    step = plot_w / max(len(values) - 1, 1)
    points = tuple(
        Point(50 + i * step, 10 + plot_h * (1 - v / top), f"{label}: {v:g}{unit}")
        for i, (label, v) in enumerate(values)
    )
    every = max(1, len(values) // 6)  # at most ~6 labels under the axis
    shown = [i for i in range(len(points)) if i % every == 0]

    def anchor(i: int) -> str:  # the outer labels grow inwards, so that none is cut off
        return "start" if i == 0 else "end" if i == len(points) - 1 else "middle"

    ticks = tuple((points[i].x, values[i][0], anchor(i)) for i in shown)
    return LineChart(title, width, height, unit, top, points, ticks)
