"""Server-rendered SVG charts: no script, nothing fetched, readable without the picture.

Each chart is an ``<svg role="img">`` with ``<title>`` and ``<desc>`` naming what it shows and
its largest value, one ``<title>`` per bar (the browser's tooltip), and the same numbers as a
table under it, so a screen reader or a text browser gets all of it. Colours come from
attributes, not inline styles, so the page CSP (``style-src 'self'``) stays strict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from symphonyd.dashboard.html import esc, num

WIDTH = 640
HEIGHT = 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 12, 12, 40
BAR = "#2f5bd3"
BAR_BAD = "#b3261e"
AXIS = "#4a5263"
GRID = "#dde1e8"


@dataclass(frozen=True)
class Series:
    """One chart's data: a label and a value per bar, in display order."""

    key: str  # element id prefix, unique on the page
    title: str
    unit: str  # what a value counts ("runs", "tokens")
    labels: list[str]
    values: list[int]
    label_header: str = "When (UTC)"


def _nice_max(value: int) -> int:
    """The axis top: four equal whole-number steps of 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 4
    quarter = value / 4
    magnitude: int = 10 ** max(int(math.floor(math.log10(quarter))), 0)
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= quarter)
    return 4 * step


def _summary(s: Series) -> str:
    total = sum(s.values)
    if not total:
        return f"No {s.unit} in this period."
    top = max(range(len(s.values)), key=lambda i: s.values[i])
    return (
        f"{total:,} {s.unit} in all; the most, {s.values[top]:,}, at {s.labels[top]}."
        if s.label_header.startswith("When")
        else f"{total:,} {s.unit} in all; the most, {s.values[top]:,}, for {s.labels[top]}."
    )


def _data_table(s: Series) -> str:
    rows = "".join(
        f"<tr><td>{esc(label)}</td><td class=n>{num(value)}</td></tr>"
        for label, value in zip(s.labels, s.values, strict=True)
    )
    return (
        f'<details class="chart-data"><summary>{esc(s.title)}: the numbers</summary>'
        f"<table><thead><tr><th>{esc(s.label_header)}</th><th>{esc(s.unit.capitalize())}</th>"
        f"</tr></thead><tbody>{rows}</tbody></table></details>"
    )


def _frame(s: Series, body: str, height: int = HEIGHT) -> str:
    tid, did = f"{s.key}-title", f"{s.key}-desc"
    return (
        f'<figure class="chart" id="{esc(s.key)}"><figcaption>{esc(s.title)}</figcaption>'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-labelledby="{tid} {did}" focusable="false">'
        f'<title id="{tid}">{esc(s.title)}</title><desc id="{did}">{esc(_summary(s))}</desc>'
        f"{body}</svg>{_data_table(s)}</figure>"
    )


def column_chart(s: Series, *, colour: str = BAR) -> str:
    """Vertical bars over time; every bar has a tooltip, every 4th slot a label."""
    top = _nice_max(max(s.values, default=0))
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    parts: list[str] = []
    for i in range(5):  # gridlines with their values
        value = top * i // 4  # exact: top is a multiple of 4
        y = _TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID if i else AXIS}"/>'
            f'<text x="{_LEFT - 6}" y="{y + 5:.1f}" text-anchor="end" font-size="13" '
            f'fill="{AXIS}">{value:,}</text>'
        )
    n = max(len(s.values), 1)
    slot = plot_w / n
    every = max(1, math.ceil(n / 6))
    for i, (label, value) in enumerate(zip(s.labels, s.values, strict=True)):
        h = plot_h * value / top
        x = _LEFT + i * slot + slot * 0.15
        parts.append(
            f'<rect x="{x:.1f}" y="{_TOP + plot_h - h:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{h:.1f}" fill="{colour}"><title>{esc(label)}: {value:,} {esc(s.unit)}'
            "</title></rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - _BOTTOM + 16}" font-size="13" '
                f'text-anchor="middle" fill="{AXIS}">{esc(label[-5:])}</text>'
            )
    return _frame(s, "".join(parts))


def bar_chart(s: Series, *, colour: str = BAR_BAD) -> str:
    """Horizontal bars by category (failures by reason), largest first."""
    rows = max(len(s.values), 1)
    top = max(s.values, default=0) or 1  # the largest bar spans the plot; values are printed
    label_w = 190
    plot_w = WIDTH - label_w - 60
    row_h = 32
    height = _TOP + rows * row_h + 8
    parts: list[str] = []
    for i, (label, value) in enumerate(zip(s.labels, s.values, strict=True)):
        y = _TOP + i * row_h
        w = plot_w * value / top
        short = label if len(label) <= 28 else label[:27] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + row_h * 0.62:.1f}" text-anchor="end" '
            f'font-size="14" fill="{AXIS}">{esc(short)}</text>'
            f'<rect x="{label_w}" y="{y + row_h * 0.15:.1f}" width="{w:.1f}" '
            f'height="{row_h * 0.7:.1f}" fill="{colour}"><title>{esc(label)}: {value:,} '
            f"{esc(s.unit)}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + row_h * 0.62:.1f}" font-size="14" '
            f'fill="{AXIS}">{value:,}</text>'
        )
    if not s.values:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{height / 2 + 5}" text-anchor="middle" font-size="13" '
            f'fill="{AXIS}">none</text>'
        )
    return _frame(s, "".join(parts), height)
