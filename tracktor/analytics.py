"""Funnels and metrics read from ClickHouse with the parameterised queries in sql/queries/."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from tracktor.config import Funnel, Metric
from tracktor.warehouse import query_template

PREDEFINED_RANGES = {"today": 1, "last-7-days": 7, "last-30-days": 30, "last-90-days": 90}


def date_range(name: str | None = None, start: date | None = None, end: date | None = None,
               today: date | None = None) -> tuple[date, date]:
    """[first day, last day] of a predefined range ('last-7-days' ends today) or a custom one."""
    if start and end:
        if end < start:
            raise ValueError(f"the range ends ({end}) before it starts ({start})")
        return start, end
    today = today or datetime.now(timezone.utc).date()
    if name not in PREDEFINED_RANGES:
        raise ValueError(f"unknown range {name!r}: use one of {', '.join(PREDEFINED_RANGES)} or --from/--to")
    return today - timedelta(days=PREDEFINED_RANGES[name] - 1), today


def _bounds(first: date, last: date) -> dict:
    start = datetime(first.year, first.month, first.day, tzinfo=timezone.utc)
    return {"from_ts": start, "to_ts": start + timedelta(days=(last - first).days + 1)}


@dataclass
class FunnelStep:
    event: str
    people: int
    from_previous: float | None  # share of the previous step's people, None for the first step
    from_first: float | None
    persons: list[str]


def funnel(client, database: str, app: str, f: Funnel, first: date, last: date) -> list[FunnelStep]:
    bounds = _bounds(first, last)
    window_ms = int((f.window_seconds or (bounds["to_ts"] - bounds["from_ts"]).total_seconds()) * 1000)
    sql = query_template("funnel", database).replace(
        "/*STEPS*/", ", ".join(f"event = {{step_{i}:String}}" for i in range(len(f.steps))))
    params = {"app": app, "window_ms": window_ms, "steps": list(f.steps), **bounds,
              **{f"step_{i}": s for i, s in enumerate(f.steps)}}
    by_level = {lvl: (n, persons) for lvl, n, persons in client.query(sql, parameters=params).result_rows}
    steps, reached_persons = [], []
    for i, event in enumerate(f.steps):
        level = i + 1
        people = sum(n for lvl, (n, _) in by_level.items() if lvl >= level)
        persons = sorted(p for lvl, (_, ps) in by_level.items() if lvl >= level for p in ps)
        prev = steps[-1].people if steps else None
        steps.append(FunnelStep(
            event=event, people=people, persons=persons,
            from_previous=None if prev is None else (people / prev if prev else 0.0),
            from_first=None if not steps else (people / steps[0].people if steps[0].people else 0.0),
        ))
    return steps


@dataclass
class MetricResult:
    name: str
    type: str
    days: list[tuple[date, float]]
    daily_max: float
    daily_min: float
    daily_avg: float
    people: int


def metric(client, database: str, app: str, m: Metric, first: date, last: date) -> MetricResult:
    bounds = _bounds(first, last)
    params = {"app": app, "event": m.params["event"], **bounds}
    rows = client.query(query_template("metric_daily", database), parameters=params).result_rows
    column = {"people_did_event": 1, "times_event_happened": 2}[m.type]
    by_day = {r[0]: r[column] for r in rows}
    days = [(first + timedelta(days=i), by_day.get(first + timedelta(days=i), 0))
            for i in range((last - first).days + 1)]
    values = [v for _, v in days]
    people = client.query(query_template("metric_people", database), parameters=params).result_rows[0][0]
    return MetricResult(name=m.name, type=m.type, days=days, daily_max=max(values), daily_min=min(values),
                        daily_avg=sum(values) / len(values), people=people)
