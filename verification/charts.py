"""Bar charts drawn on the server as SVG. Pure.

The closed-loop page draws its charts here rather than with a charting library in the browser: the page's CSP
allows no inline script, an SVG needs no script at all, weighs a few kilobytes (ECharts is ~1 MB of JavaScript
before the first bar), prints, works on every phone and with script turned off, and its numbers are in the HTML
that tests read. Only SVG presentation attributes are used (no `style`), which the CSP allows.

Horizontal bars: one row a category, its label on the left, so that 34 provinces or 24 months fit a phone's
width as well as a desktop's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

ROW_H = 22  # height of one category's row
BAR_H = 14
LABEL_W = 64  # the category labels' column
WIDTH = 360  # a phone's width: drawn at about 1:1 there, so the text stays legible
VALUE_W = 64  # room right of the longest bar for its value
TOP = 8
LEGEND_H = 22


@dataclass(frozen=True)
class Series:
    """One set of bars: its name (zh · en), CSS class (its colour) and one value a category."""

    name: str
    css: str
    values: Sequence[float]
    labels: Sequence[str]  # each value as shown beside its bar


def _legend(series: Sequence[Series], y: int) -> list[str]:
    parts: list[str] = []
    x = LABEL_W
    for s in series:
        parts.append(f'<rect class="{s.css}" x="{x}" y="{y}" width="12" height="12"/>')
        parts.append(f'<text class="legend" x="{x + 16}" y="{y + 10}">{escape(s.name)}</text>')
        x += 24 + 7 * len(s.name)
    return parts


def bar_chart(chart_id: str, title: str, categories: Sequence[str], series: Sequence[Series], scale: float) -> str:
    """An SVG of horizontal bars: each category gets one bar per series, as long as its value over `scale` (the
    largest value, or 1 for shares); every bar carries its category and value as data attributes."""
    per_row = ROW_H * len(series)
    legend = len(series) > 1
    top = TOP + (LEGEND_H if legend else 0)
    height = top + per_row * len(categories) + 8
    span = WIDTH - LABEL_W - VALUE_W
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
        f'height="{height}" role="img" aria-labelledby="{escape(chart_id)}-title" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
    ]
    if legend:
        parts += _legend(series, TOP)
    for i, category in enumerate(categories):
        y0 = top + i * per_row
        parts.append(
            f'<text class="category" x="{LABEL_W - 6}" y="{y0 + per_row / 2 + 4:.0f}">{escape(category)}</text>'
        )
        for j, s in enumerate(series):
            value = s.values[i]
            length = span * value / scale if scale > 0 else 0.0
            y = y0 + j * ROW_H + (ROW_H - BAR_H) / 2
            parts.append(
                f'<g class="bar" data-category="{escape(category)}" data-series="{escape(s.css)}" data-value="{value}">'
                f'<rect class="{s.css}" x="{LABEL_W}" y="{y:.0f}" width="{max(length, 1.0):.1f}" height="{BAR_H}"/>'
                f'<text class="value" x="{LABEL_W + length + 4:.1f}" y="{y + BAR_H - 3:.0f}">{escape(s.labels[i])}</text>'
                "</g>"
            )
    parts.append("</svg>")
    return "".join(parts)


def percent(share: float) -> str:
    """A share as the page shows it: `35.2%`."""
    return f"{share * 100:.1f}%"
