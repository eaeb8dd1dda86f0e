"""Charts as self-contained HTML (inline SVG, no script, no outside resources): a metric's
daily series as bars, a funnel's steps as bars with their conversion."""
from __future__ import annotations

from html import escape

from tracktor.analytics.queries import UNITS, FunnelStep, MetricResult

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
h1 {{ font-size: 18px; font-weight: 600; }}
.note {{ color: #555; }}
svg text {{ font: 12px system-ui, sans-serif; fill: #333; }}
.bar {{ fill: #3b7dd8; }} .bar.none {{ fill: #ccc; }}
</style></head><body>
<h1>{title}</h1>
{svg}
<p class="note">{note}</p>
</body></html>
"""


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,}" if isinstance(x, int) else f"{x:,.2f}"


def _page(title: str, svg: str, note: str) -> str:
    return _PAGE.format(title=escape(title), svg=svg, note=escape(note))


def metric_html(title: str, m: MetricResult) -> str:
    """The daily series as vertical bars (days without a value drawn grey)."""
    width, height, top, bottom, left = 60 + 28 * len(m.days), 260, 20, 60, 50
    peak = max((v for _, v in m.days if v is not None), default=0) or 1
    plot_h = height - top - bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{max(width, 320)}" height="{height}" role="img">',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}" stroke="#999"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{escape(_fmt(peak))}</text>',
             f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">0</text>']
    for i, (day, value) in enumerate(m.days):
        x = left + 8 + 28 * i
        h = 2 if value is None else max(1, round(plot_h * value / peak))
        cls = "bar none" if value is None else "bar"
        parts.append(f'<rect class="{cls}" x="{x}" y="{height - bottom - h}" width="20" height="{h}">'
                     f'<title>{day}: {escape(_fmt(value))}</title></rect>')
        parts.append(f'<text x="{x + 10}" y="{height - bottom + 14}" text-anchor="end" '
                     f'transform="rotate(-60 {x + 10} {height - bottom + 14})">{day:%m-%d}</text>')
    parts.append("</svg>")
    unit = f" ({UNITS[m.type]})" if m.type in UNITS else ""
    note = (f"{m.type}{unit}: over the range {_fmt(m.total)}; daily max {_fmt(m.daily_max)}, "
            f"min {_fmt(m.daily_min)}, average {_fmt(float(m.daily_avg))}; people {m.people:,}")
    return _page(title, "\n".join(parts), note)


def funnel_html(title: str, steps: list[FunnelStep]) -> str:
    """One horizontal bar per step, labelled with its people and conversion."""
    row, label_w, bar_w = 34, 220, 420
    height = 20 + row * len(steps)
    first = steps[0].people or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 220}" height="{height}" role="img">']
    for i, s in enumerate(steps):
        y = 10 + row * i
        w = max(1, round(bar_w * s.people / first)) if s.people else 1
        conv = "" if s.from_previous is None else f"  {100 * s.from_previous:.1f}% of previous, {100 * s.from_first:.1f}% of first"
        parts.append(f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{i + 1}. {escape(s.event)}</text>')
        parts.append(f'<rect class="bar" x="{label_w}" y="{y}" width="{w}" height="24"><title>{s.people:,}</title></rect>')
        parts.append(f'<text x="{label_w + w + 6}" y="{y + 17}">{s.people:,}{escape(conv)}</text>')
    parts.append("</svg>")
    return _page(title, "\n".join(parts), "People who reached each step, loose order, after identity merges.")
