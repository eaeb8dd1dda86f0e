"""Rendering funnel and metric answers as text tables or JSON."""
from __future__ import annotations

import json
from dataclasses import asdict

from tracktor.analytics import UNITS, FunnelStep, MetricResult, Person


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def funnel_table(title: str, steps: list[FunnelStep]) -> str:
    width = max(len(s.event) for s in steps)
    lines = [title, f"  {'step':<{width}}  {'people':>8}  {'from prev':>9}  {'from first':>10}"]
    for s in steps:
        lines.append(f"  {s.event:<{width}}  {s.people:>8,}  {_pct(s.from_previous):>9}  {_pct(s.from_first):>10}")
    return "\n".join(lines)


def people_table(title: str, people: list[Person]) -> str:
    lines = [title, f"  {'person':<24}  {'email':<30}  last action"]
    for p in people:
        lines.append(f"  {p.person:<24}  {p.email:<30}  {p.last_action} ({p.last_seen:%Y-%m-%d %H:%M})")
    return "\n".join(lines) if people else title + "\n  (nobody)"


def _num(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:,.2f}"


def metric_table(title: str, m: MetricResult) -> str:
    lines = [title + (f" [{UNITS[m.type]}]" if m.type in UNITS else "")]
    peak = max((v for _, v in m.days if v is not None), default=0) or 1
    for day, value in m.days:
        if value is None:
            lines.append(f"  {day}  {'-':>10}")
        else:
            lines.append(f"  {day}  {_num(value):>10}  {'#' * round(30 * value / peak)}")
    lines.append(f"  over the range {_num(m.total)};  daily max {_num(m.daily_max)}  min {_num(m.daily_min)}"
                 f"  avg {m.daily_avg:,.2f};  people {m.people:,}")
    return "\n".join(lines)


def as_json(obj) -> str:
    if isinstance(obj, list):
        data = [asdict(x) for x in obj]
    else:
        data = asdict(obj)
    return json.dumps(data, default=str, indent=2)
