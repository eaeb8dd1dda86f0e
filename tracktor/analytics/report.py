"""Questions about funnels and metrics, answered from ClickHouse and rendered as a text
table, JSON or an HTML chart. The command line (`report`) and the HTTP API (tracktor/api.py)
both go through `ask` → `answer` → `render`, so they give the same answers."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date

from tracktor.analytics import queries as analytics, charts
from tracktor.analytics.queries import UNITS, FunnelStep, MetricResult, Person
from tracktor.config import Config, Funnel, Metric, funnel_from, metric_from

FORMATS = ("table", "json", "html")


class NotFound(LookupError):
    """An unknown app, funnel or metric."""


@dataclass(frozen=True)
class Question:
    app: str
    kind: str                        # "funnel", "metric", "segment" or "campaign"
    definition: Funnel | Metric | SegmentName
    first: date
    last: date
    step: int | None = None          # funnel drill-down: the people at this step (1-based)
    dropped: bool = False            # ... who went no further
    limit: int = 100
    offset: int = 0                  # the drill-down's page: from the offset-th person

    @property
    def title(self) -> str:
        what = f"{self.app} {self.kind} {self.definition.name}, {self.first}..{self.last}"
        if self.step:
            what += f": {'dropped after' if self.dropped else 'reached'} step {self.step}"
        return what


@dataclass(frozen=True)
class SegmentName:
    """A segment or campaign asked about by name: it may be defined in tracktor.yaml or while
    running (a newsletter's statistics are those of campaign newsletter:NAME)."""
    name: str


def ask(cfg: Config, app: str, kind: str, name: str | None = None, definition: dict | None = None,
        range_name: str | None = "last-7-days", date_from: date | None = None, date_to: date | None = None,
        step: int | None = None, dropped: bool = False, limit: int = 100, offset: int = 0,
        saved: dict | None = None) -> Question:
    """A validated question: a funnel or metric by its name in the config or among the app's
    `saved` definitions (tracktor/analytics/saved.py), or an ad hoc `definition` (the same
    keys as in tracktor.yaml). Raises NotFound or ValueError."""
    if app not in cfg.apps:
        raise NotFound(f"no app {app!r}")
    if kind not in ("funnel", "metric", "segment", "campaign"):
        raise ValueError(f"kind must be funnel, metric, segment or campaign, got {kind!r}")
    defined = {"funnel": cfg.apps[app].funnels, "metric": cfg.apps[app].metrics,
               "segment": cfg.apps[app].segments, "campaign": cfg.apps[app].campaigns}[kind]
    if kind in ("segment", "campaign"):
        if definition is not None:
            raise ValueError(f"a {kind} is asked about by name (define it with `{kind}s apply`)")
        if not name:
            raise ValueError(f"which {kind}?")
        definition = SegmentName(name)
    elif definition is None and name in defined:
        definition = defined[name]
    else:
        if definition is None:  # by name, among the saved ones
            kept = (saved or {}).get(kind, {})
            if name not in kept:
                raise NotFound(f"app {app} has no {kind} {name!r} (has: {', '.join([*defined, *kept]) or 'none'})")
            definition = kept[name]
        definition = (funnel_from if kind == "funnel" else metric_from)(name or "ad hoc", definition)
    first, last = analytics.date_range(range_name, date_from, date_to)
    if step is not None:
        if kind != "funnel":
            raise ValueError("only a funnel has people at a step")
        if not 1 <= step <= len(definition.events):
            raise ValueError(f"step must be 1..{len(definition.events)}, got {step}")
    if not 1 <= limit <= 10_000:
        raise ValueError(f"limit must be 1..10000, got {limit}")
    if not 0 <= offset <= 1_000_000:
        raise ValueError(f"offset must be 0..1000000, got {offset}")
    return Question(app, kind, definition, first, last, step, dropped, limit, offset)


class _WithSettings:
    """A client whose every query carries the same ClickHouse settings (a time limit)."""

    def __init__(self, client, settings: dict):
        self.client, self.settings = client, settings

    def query(self, sql: str, parameters: dict | None = None):
        return self.client.query(sql, parameters=parameters, settings=self.settings)


def with_settings(client, settings: dict | None):
    """`client`, with `settings` (e.g. max_execution_time) on every query when given."""
    return _WithSettings(client, settings) if settings else client


def answer(client, database: str, q: Question, settings: dict | None = None):
    """list[FunnelStep], list[Person] (drill-down) or a MetricResult; `settings` go with
    every query (e.g. max_execution_time)."""
    client = with_settings(client, settings)
    if q.kind == "metric":
        return analytics.metric(client, database, q.app, q.definition, q.first, q.last)
    if q.kind == "segment":
        return analytics.segment(client, database, q.app, q.definition.name, q.first, q.last, q.limit)
    if q.kind == "campaign":
        return analytics.campaign(client, database, q.app, q.definition.name, q.limit)
    if q.step:
        return analytics.funnel_people(client, database, q.app, q.definition, q.first, q.last, q.step, q.dropped, q.limit,
                                         q.offset)
    return analytics.funnel(client, database, q.app, q.definition, q.first, q.last)


def render(q: Question, result, fmt: str = "table") -> str:
    if fmt == "json":
        return as_json(result)
    if fmt == "html":
        if q.step:
            raise ValueError("the drill-down is a list: ask for table or json")
        if q.kind in ("segment", "campaign"):
            raise ValueError(f"a {q.kind} report is a table or json")
        return charts.metric_html(q.title, result) if q.kind == "metric" else charts.funnel_html(q.title, result)
    if q.kind == "metric":
        return metric_table(q.title, result)
    if q.kind == "segment":
        return segment_table(q.title, result)
    if q.kind == "campaign":
        return campaign_table(q.app, result)
    return people_table(q.title, result) if q.step else funnel_table(q.title, result)


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def funnel_table(title: str, steps: list[FunnelStep]) -> str:
    width = max(len(s.event) for s in steps)
    lines = [title, f"  {'step':<{width}}  {'people':>8}  {'from prev':>9}  {'from first':>10}"]
    for s in steps:
        lines.append(f"  {s.event:<{width}}  {s.people:>8,}  {_pct(s.from_previous):>9}  {_pct(s.from_first):>10}")
    return "\n".join(lines)


def segment_table(title: str, seg) -> str:
    peak = max((n for _, n in seg.days), default=0) or 1
    lines = [title, "  members at the end of each day:"]
    lines += [f"  {day}  {n:>8,}  {'#' * round(30 * n / peak)}" for day, n in seg.days]
    lines.append(f"  members now: {seg.count:,}" + (f" (the first {len(seg.members)} by id)" if seg.count > len(seg.members) else ""))
    lines.append(f"  {'person':<24}  {'email':<30}  {'since':<16}  properties")
    for m in seg.members:
        props = ", ".join(f"{k}={v}" for k, v in sorted(m.properties.items()) if k != "email")
        lines.append(f"  {m.person:<24}  {m.email:<30}  {m.since:%Y-%m-%d %H:%M}  {props[:80]}")
    return "\n".join(lines)


def campaign_table(app: str, c) -> str:
    def table(rows: list[dict], cols: tuple[str, ...]) -> list[str]:
        cells = [[str(r[k]) for k in cols] for r in rows]
        widths = [max([len(k), *(len(row[i]) for row in cells)]) for i, k in enumerate(cols)]
        return ["  ".join(k.ljust(w) for k, w in zip(cols, widths))] + \
               ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    lines = [f"{app} campaign {c.name}", "", "blocks (entries, people):"]
    lines += table(c.blocks, ("block", "entered", "people")) if c.blocks else ["  (no one entered yet)"]
    lines += ["", "letters:"]
    lines += table(c.letters, ("letter", "sent", "opened", "bounced", "failed", "clicked", "total_clicks")) if c.letters \
        else ["  (none sent)"]
    lines += ["", "letter activity:"]
    lines += table(c.activity, ("status", "person_id", "email", "subject", "opens", "clicks")) if c.activity \
        else ["  (none)"]
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
