"""Bar charts as inline SVG (pure): no scripts, no inline styles (the console's CSP allows neither).

Each chart carries a <title> and a <desc> listing every value, so a screen reader gets the numbers
the picture shows.
"""
from __future__ import annotations

import html
import math
import re
from typing import Sequence

Series = tuple[str, Sequence[float | None]]


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 5 × 10ⁿ)."""
    if value <= 0:
        return 1.0
    base = 10 ** math.floor(math.log10(value))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= value)


def _fmt(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() or abs(v) >= 100 else f"{v:.1f}"


def _short(label: str, limit: int = 20) -> str:
    """Axis labels stay short; the full name is in each bar's title and the description."""
    return label if len(label) <= limit else label[:limit - 1] + "…"


def bar_chart(title: str, labels: Sequence[str], series: Sequence[Series], unit: str = "",
              width: int = 760, height: int = 290) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "chart"
    left, right, top, bottom = 64, 12, 28, 96
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs if v is not None]
    top_value = _nice_max(max(values, default=0))
    group_w = plot_w / max(1, len(labels))
    bar_w = max(1.0, group_w * 0.8 / max(1, len(series)))
    parts = [f'<svg class="chart" role="img" aria-labelledby="{slug}-t {slug}-d" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{slug}-t">{_e(title)}</title>']
    described = "; ".join(f"{name}: " + ", ".join(f"{lab} {_fmt(v) if v is not None else 'none'}{unit}"
                                                  for lab, v in zip(labels, vs)) for name, vs in series)
    parts.append(f'<desc id="{slug}-d">{_e(described or "No data.")}</desc>')
    parts.append(f'<text x="{left}" y="16">{_e(title)}</text>')
    for fraction in (0, 0.5, 1):                         # value axis: 0, half, top
        y = top + plot_h * (1 - fraction)
        parts.append(f'<line class="axis" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                     f'stroke-opacity="{1 if fraction == 0 else 0.25}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(top_value * fraction)}'
                     f'{_e(unit)}</text>')
    show_values = len(labels) * len(series) <= 32
    step = max(1, math.ceil(len(labels) / 24))           # at most ~24 category labels
    for i, label in enumerate(labels):
        x0 = left + i * group_w + group_w * 0.1
        for s, (name, vs) in enumerate(series):
            v = vs[i] if i < len(vs) else None
            if v is None:
                continue
            h = plot_h * v / top_value
            x, y = x0 + s * bar_w, top + plot_h - h
            parts.append(f'<rect class="bar s{s}" x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.92:.1f}" '
                         f'height="{h:.1f}"><title>{_e(f"{label}, {name}: {_fmt(v)}{unit}")}</title></rect>')
            if show_values:
                parts.append(f'<text x="{x + bar_w * 0.46:.1f}" y="{y - 3:.1f}" text-anchor="middle">{_fmt(v)}</text>')
        if i % step == 0:
            cx, cy = left + (i + 0.5) * group_w, top + plot_h + 14
            parts.append(f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="end" '
                         f'transform="rotate(-35 {cx:.1f} {cy:.1f})">{_e(_short(label))}</text>')
    if len(series) > 1:
        for s, (name, _) in enumerate(series):
            x = left + plot_w - 150 * (len(series) - s)
            parts.append(f'<rect class="bar s{s}" x="{x}" y="6" width="12" height="12"/>'
                         f'<text x="{x + 16}" y="16">{_e(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
