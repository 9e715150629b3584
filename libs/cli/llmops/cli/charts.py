"""Inline SVG charts drawn in Python, for pages that must work offline (no chart library, no script)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from html import escape

# Saturated colours for data only; axes, grid and thresholds are grey, so a picture of a chart that has
# coloured pixels has data in it. Red is kept for marked points (drifted).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
MARK = "#d62728"
AXIS = "#888888"
GRID = "#e6e6e6"
THRESHOLD = "#555555"


@dataclass(frozen=True)
class Point:
    """One value at one time; ``marked`` points are drawn as red rings (e.g. drifted)."""

    at: dt.datetime
    value: float
    marked: bool = False
    note: str = ""


@dataclass(frozen=True)
class Series:
    name: str
    points: list[Point] = field(default_factory=list)
    dashed: bool = False
    # Series that belong together (p50 and p95 of one version) share a colour.
    colour_index: int | None = None

    def colour(self, index: int) -> str:
        return colour(index if self.colour_index is None else self.colour_index)


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round numbers covering [low, high] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.999:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _epoch(at: dt.datetime) -> float:
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at.timestamp()


def _time_label(seconds: float, span: float) -> str:
    at = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return at.strftime("%H:%M") if span <= 36 * 3600 else at.strftime("%m-%d %H:%M")


def line_chart(
    series: list[Series],
    *,
    title: str,
    unit: str = "",
    threshold: float | None = None,
    width: int = 560,
    height: int = 240,
    zero_based: bool = True,
) -> str:
    """An SVG line chart over time: one polyline and one circle per point for each series.

    Args:
        series: the lines; points need not be sorted. Series without points are left out.
        title: what the chart shows (the SVG's accessible name).
        unit: printed beside the y axis.
        threshold: drawn as a dashed grey line across the chart.
        zero_based: start the y axis at 0 when every value is positive.
    """
    drawn = [s for s in series if s.points]
    left, right, top, bottom = 64, 16, 12, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [_epoch(p.at) for s in drawn for p in s.points]
    ys = [p.value for s in drawn for p in s.points if math.isfinite(p.value)]
    if threshold is not None:
        ys.append(threshold)
    x_low, x_high = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_high - x_low < 60:
        x_low, x_high = x_low - 1800, x_high + 1800
    y_low, y_high = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if zero_based and y_low >= 0:
        y_low = 0.0
    ticks = nice_ticks(y_low, y_high)
    y_low, y_high = min(ticks[0], y_low), max(ticks[-1], y_high)

    def sx(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - (y - y_low) / (y_high - y_low) * plot_h

    total = sum(len(s.points) for s in drawn)
    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'data-series="{len(drawn)}" data-points="{total}">',
        f"<title>{escape(title)}</title>",
        f'<rect class="plot-area" x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#ffffff"/>',
    ]
    for tick in ticks:
        y = sy(tick)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_label(tick)}</text>'
        )
    span = x_high - x_low
    for i in range(5):
        x = x_low + span * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        out.append(
            f'<text x="{sx(x):.1f}" y="{height - 12}" text-anchor="{anchor}" class="tick">'
            f"{_time_label(x, span)}</text>"
        )
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{AXIS}"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="{AXIS}"/>'
    )
    if unit:
        out.append(
            f'<text class="unit" x="12" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
            f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(unit)}</text>'
        )
    if threshold is not None:
        y = sy(threshold)
        out.append(
            f'<line class="threshold" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
            f'stroke="{THRESHOLD}" stroke-width="1.5" stroke-dasharray="6 4">'
            f"<title>threshold {_label(threshold)}</title></line>"
        )
    for index, s in enumerate(series):
        if not s.points:
            continue
        points = sorted(s.points, key=lambda p: _epoch(p.at))
        finite = [p for p in points if math.isfinite(p.value)]
        coords = " ".join(f"{sx(_epoch(p.at)):.1f},{sy(p.value):.1f}" for p in finite)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        out.append(
            f'<polyline class="series" data-series="{escape(s.name)}" data-points="{len(finite)}" '
            f'points="{coords}" fill="none" stroke="{s.colour(index)}" stroke-width="2"{dash}/>'
        )
        for p in finite:
            x, y = sx(_epoch(p.at)), sy(p.value)
            tip = f"{s.name} {p.at:%Y-%m-%d %H:%M} {_label(p.value)}{' ' + p.note if p.note else ''}"
            if p.marked:
                out.append(
                    f'<circle class="point marked" cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{s.colour(index)}" '
                    f'stroke="{MARK}" stroke-width="3"><title>{escape(tip)}</title></circle>'
                )
            else:
                out.append(
                    f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{s.colour(index)}">'
                    f"<title>{escape(tip)}</title></circle>"
                )
    out.append("</svg>")
    return "".join(out)


def legend(series: list[Series], *, threshold: bool = False, marked: str = "") -> str:
    """The HTML legend of a chart: a swatch per series, and the threshold and marked-point keys."""
    items = [
        f'<span class="key"><span class="swatch" style="background:{s.colour(i)}"></span>{escape(s.name)}'
        f"{' (dashed)' if s.dashed else ''}</span>"
        for i, s in enumerate(series)
        if s.points
    ]
    if threshold:
        items.append('<span class="key"><span class="swatch threshold-key"></span>threshold</span>')
    if marked:
        items.append(f'<span class="key"><span class="swatch marked-key"></span>{escape(marked)}</span>')
    return f'<div class="legend">{"".join(items)}</div>'


def bar(value: float | None, high: float, *, colour_index: int = 0, width: int = 160) -> str:
    """A small horizontal bar for a table cell, ``value`` against ``high`` (nothing when unknown)."""
    if value is None or not math.isfinite(value) or high <= 0:
        return ""
    length = max(1.0, min(1.0, value / high) * width)
    return (
        f'<svg class="bar" width="{width}" height="10" viewBox="0 0 {width} 10">'
        f'<rect width="{length:.1f}" height="10" fill="{colour(colour_index)}"/></svg>'
    )
