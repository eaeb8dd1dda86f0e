"""Funnels and metrics read from ClickHouse with the parameterised queries in sql/queries/."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from tracktor.config import Criterion, Funnel, Metric
from tracktor.warehouse import query_template
from udfs.rollup import json_text

PREDEFINED_RANGES = {"today": 1, "last-7-days": 7, "last-30-days": 30, "last-90-days": 90}
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2200, 12, 31)   # the days a range may cover (DateTime64's span, with room)


def date_range(name: str | None = None, start: date | None = None, end: date | None = None,
               today: date | None = None) -> tuple[date, date]:
    """[first day, last day] of a predefined range ('last-7-days' ends today) or a custom one."""
    if (start is None) != (end is None):
        raise ValueError("give both the first and the last day, or a range")
    if start and end:
        if end < start:
            raise ValueError(f"the range ends ({end}) before it starts ({start})")
        if start < FIRST_DAY or end > LAST_DAY:
            raise ValueError(f"a range lies within {FIRST_DAY}..{LAST_DAY}, got {start}..{end}")
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


def criteria_arrays(criteria: tuple[Criterion, ...]) -> tuple[list[str], list[str], list[str]]:
    """Criteria as the parallel arrays the SQL takes: keys, operators, JSON values (in the
    JSON text metric_rollup stores)."""
    return ([c.property for c in criteria], [c.op for c in criteria],
            [json_text(c.value) for c in criteria])


def _funnel_query(name: str, f: Funnel, first: date, last: date, app: str) -> tuple[str, dict]:
    """The query (`name`, or its _filtered variant when the funnel has filters: unfiltered
    funnels use the cheaper view) and its parameters."""
    bounds = _bounds(first, last)
    window_s = f.window_seconds or (bounds["to_ts"] - bounds["from_ts"]).total_seconds()
    params = {"app": app, "steps": list(f.events), "window_ms": int(window_s * 1000), **bounds}
    if not (f.step_filters or f.people_filter):
        return name, params
    steps = [criteria_arrays(c) for c in f.step_filters]
    person = criteria_arrays(f.people_filter)
    return f"{name}_filtered", {
        **params, "step_keys": [k for k, _, _ in steps], "step_ops": [o for _, o, _ in steps],
        "step_values": [v for _, _, v in steps],
        "person_keys": person[0], "person_ops": person[1], "person_values": person[2]}


def _rows(client, database: str, name: str, params: dict) -> list:
    return client.query(query_template(name, database), parameters=params).result_rows


def funnel(client, database: str, app: str, f: Funnel, first: date, last: date) -> list[FunnelStep]:
    by_level = dict(_rows(client, database, *_funnel_query("funnel", f, first, last, app)))
    steps: list[FunnelStep] = []
    for i, event in enumerate(f.events):
        people = sum(n for lvl, n in by_level.items() if lvl >= i + 1)
        prev = steps[-1].people if steps else None
        steps.append(FunnelStep(
            event=event, people=people,
            from_previous=None if prev is None else (people / prev if prev else 0.0),
            from_first=None if not steps else (people / steps[0].people if steps[0].people else 0.0),
        ))
    return steps


@dataclass
class Person:
    person: str
    email: str
    last_action: str
    last_seen: datetime


def funnel_people(client, database: str, app: str, f: Funnel, first: date, last: date, step: int,
                  dropped: bool = False, limit: int = 100, offset: int = 0) -> list[Person]:
    """The drill-down: people who reached step `step` (1-based), or with `dropped` those who
    reached it and went no further; at most `limit` from the `offset`th, by person id."""
    if not 1 <= step <= len(f.events):
        raise ValueError(f"step must be 1..{len(f.events)}, got {step}")
    query, params = _funnel_query("funnel_people", f, first, last, app)
    people = [r[0] for r in _rows(client, database, query, {**params, "step": step, "dropped": dropped, "limit": limit,
                                                                 "offset": offset})]
    if not people:
        return []
    rows = _rows(client, database, "people_details", {"app": app, "people": people, **_bounds(first, last)})
    return [Person(*r) for r in rows]


@dataclass
class MetricResult:
    name: str
    type: str
    days: list[tuple[date, float | None]]  # every day of the range: 0 for counts where nothing
                                           # happened, None for ratios with nothing to divide
    daily_max: float
    daily_min: float
    daily_avg: float
    people: int       # distinct people the metric counts over the whole range (property
                      # metrics: the people with a numeric value counted on the last day)
    total: float      # the metric over the whole range (not the sum of the days for ratios;
                      # property metrics: the last day's value)


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def _event_metric(client, database, m, params):
    """people_did_event, times_event_happened, avg_times_per_person."""
    params = {**params, "event": m.event}
    rows = _rows(client, database, "metric_event", params)
    people = _rows(client, database, "metric_event_people", params)[0][0]
    times = sum(r[2] for r in rows)
    if m.type == "people_did_event":
        return {r[0]: r[1] for r in rows}, people, people
    if m.type == "times_event_happened":
        return {r[0]: r[2] for r in rows}, people, times
    return {r[0]: _ratio(r[2], r[1]) for r in rows}, people, _ratio(times, people)


def _conversion(client, database, m, params):
    repeatable = m.repeatable
    window_ms = int((params["to_ts"] - params["from_ts"]).total_seconds() * 1000)
    rows = _rows(client, database, "metric_conversion", {
        **params, "event_a": m.event_a, "event_b": m.event_b,
        "repeatable": repeatable, "window_ms": window_ms})
    a_total, b_total = sum(r[1] for r in rows), sum(r[2] for r in rows)
    people = a_total if not repeatable else \
        _rows(client, database, "metric_event_people", {**params, "event": m.event_a})[0][0]
    return {r[0]: _ratio(r[2], r[1]) for r in rows}, people, _ratio(b_total, a_total)


def _time_between(client, database, m, params):
    rows = _rows(client, database, "metric_time_between",
                 {**params, "event_a": m.event_a, "event_b": m.event_b})
    people, seconds = sum(r[1] for r in rows), sum(r[2] for r in rows)
    return {r[0]: _ratio(r[2], r[1]) for r in rows}, people, _ratio(seconds, people)


def _property_total(client, database, m, params):
    """total_property_value: the daily total as of each day's end; the range's total and
    people are the last day's."""
    keys, ops, values = criteria_arrays(m.criteria)
    rows = _rows(client, database, "metric_property_total", {
        **params, "property": m.property, "crit_keys": keys, "crit_ops": ops, "crit_values": values})
    by_day = {r[0]: r[1] for r in rows}
    last = rows[-1] if rows and rows[-1][0] == params["to_ts"].date() - timedelta(days=1) else None
    return by_day, (last[2] if last else 0), (last[1] if last else 0.0)


def _property_average(client, database, m, params):
    """average_property_value: the day's total divided by the chosen divisor at its end."""
    rows = _rows(client, database, "metric_property_average", {
        **params, "property": m.property, "divide_by": m.divide_by,
        "event": m.event or ""})
    by_day = {r[0]: r[1] for r in rows if r[1] is not None}
    last_day = params["to_ts"].date() - timedelta(days=1)
    last = [r for r in rows if r[0] == last_day]
    return by_day, (last[0][2] if last else 0), by_day.get(last_day, 0.0)


# Metrics whose daily value is a ratio: a day without a denominator has no value, and is
# left out of the daily max, min and average.
RATIO_TYPES = {"avg_times_per_person", "conversion_rate", "avg_time_between", "average_property_value"}
UNITS = {"avg_time_between": "seconds", "conversion_rate": "share"}

_METRICS = {
    "people_did_event": _event_metric, "times_event_happened": _event_metric,
    "avg_times_per_person": _event_metric, "conversion_rate": _conversion, "avg_time_between": _time_between,
    "total_property_value": _property_total, "average_property_value": _property_average,
}


def metric(client, database: str, app: str, m: Metric, first: date, last: date) -> MetricResult:
    """A metric's daily series over [first, last] with its daily max/min/avg and people."""
    params = {"app": app, **_bounds(first, last)}
    by_day, people, total = _METRICS[m.type](client, database, m, params)
    empty = None if m.type in RATIO_TYPES else 0
    days = [(first + timedelta(days=i), by_day.get(first + timedelta(days=i), empty))
            for i in range((last - first).days + 1)]
    values = [v for _, v in days if v is not None] or [0]
    return MetricResult(name=m.name, type=m.type, days=days, daily_max=max(values), daily_min=min(values),
                        daily_avg=sum(values) / len(values), people=people, total=total)


@dataclass
class SegmentMember:
    person: str
    email: str
    properties: dict
    since: datetime


@dataclass
class SegmentResult:
    name: str
    days: list[tuple[date, int]]   # members at the end of each day of the range
    members: list[SegmentMember]  # the members now (at most `limit`, by person id)
    count: int                    # how many members now


def segment_names(client, database: str, app: str, defined=()) -> list[str]:
    """The app's segments: those `defined` in its configuration and those that have had
    members (defined while segment_eval runs), by name."""
    return sorted(set(defined) | {r[0] for r in _rows(client, database, "segment_names", {"app": app})})


def segment(client, database: str, app: str, name: str, first: date, last: date, limit: int = 100) -> SegmentResult:
    """A segment's members per day over [first, last] and its current members with their profile."""
    import json
    bounds = _bounds(first, last)
    by_day = dict(_rows(client, database, "segment_daily", {"app": app, "segment": name, **bounds}))
    days = [(first + timedelta(days=i), int(by_day.get(first + timedelta(days=i), 0)))
            for i in range((last - first).days + 1)]
    members = [SegmentMember(p, e, json.loads(props or "{}"), since) for p, e, props, since in
               _rows(client, database, "segment_people", {"app": app, "segment": name, "limit": limit})]
    return SegmentResult(name=name, days=days, members=members, count=segment_count(client, database, app, name))


def segment_count(client, database: str, app: str, name: str) -> int:
    """How many members the segment has now."""
    return _rows(client, database, "segment_count", {"app": app, "segment": name})[0][0]


@dataclass
class CampaignResult:
    name: str                      # the campaign, or newsletter:NAME
    blocks: list[dict]             # {block, entered, people}
    letters: list[dict]            # {letter, sent, opened, bounced, failed, clicked, total_clicks}
    activity: list[dict]           # per recipient: {status, person_id, email, subject, opens, clicks, letter, ...}


def campaign(client, database: str, app: str, name: str, limit: int = 100) -> CampaignResult:
    """A campaign's statistics (sql/migrations/0012_campaigns.sql): entries per block, per
    letter sent / opened / bounced / clicked, and the letter activity of its first `limit` recipients."""
    params = {"app": app, "campaign": name}

    def dicts(query: str, extra: dict | None = None) -> list[dict]:
        result = client.query(query_template(query, database), parameters={**params, **(extra or {})})
        return [dict(zip(result.column_names, row)) for row in result.result_rows]
    return CampaignResult(name, dicts("campaign_blocks"), dicts("campaign_letters"),
                          dicts("letter_activity", {"limit": limit}))
