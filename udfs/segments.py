"""segment_eval's decisions (DESIGN.md, Segments; docs/segments.md): live membership per person.

A person's state holds only counts and properties, not their history:
- `props`: their properties, the latest value per key (from the `$set` events), as
  identity_merge keeps them, so a merge joins them the same way;
- `counts`: per counter, events per UTC day (`{counter: {day: n}}`). Every event is counted
  by its name (so a segment defined later on any event applies to the history kept), and by
  name and data filter for the filters the app's segments use; days older than the history
  kept (`history_days`) are dropped, as are counters no segment reads past that;
- `in`: the segments they are in, and `v`, the version of their last membership record.

Each event (its time is the client's `ts` for the day it counts in, the log time for "now")
updates the counts and properties, then the segments that read what changed are evaluated;
entering or leaving one is a record on tracktor.segments with its cause. Windows roll at
midnight UTC: a person with counts inside a window wakes then and is evaluated again, so a
person who stops buying leaves "bought in the last 60 days" on the day the window passes.
"""
from __future__ import annotations

from udfs.persons import definition_change
from udfs.segment_rules import (DAY_MS, CompanyCondition, EventCondition, PropertyCondition, Segment, conditions,
                                parse_segment)

HISTORY_DAYS = 400       # days of event counts a person keeps
MAX_COUNTERS = 500       # counters per person: past it, unread then least recent ones are forgotten


class AppSegments:
    """One app's definitions, with what they read: the counters (an event name, or a name and
    a data filter), and which segments depend on which event and property."""

    def __init__(self, segments: dict[str, Segment]):
        self.segments = dict(sorted(segments.items()))
        self.by_event: dict[str, list[str]] = {}
        self.by_property: dict[str, list[str]] = {}
        self.filters: dict[str, list[EventCondition]] = {}  # event -> filtered conditions on it
        self.windowed: set[str] = set()
        self.windows: list[EventCondition] = []  # the windowed conditions, for the next wake
        for name, seg in self.segments.items():
            for cond in conditions(seg.where):
                if isinstance(cond, EventCondition):
                    self.by_event.setdefault(cond.event, []).append(name)
                    if cond.where:
                        self.filters.setdefault(cond.event, []).append(cond)
                    if cond.within is not None:
                        self.windowed.add(name)
                        self.windows.append(cond)
                else:
                    key = cond.property if isinstance(cond, PropertyCondition) else "company"
                    self.by_property.setdefault(key, []).append(name)

    def counters(self) -> set[str]:
        return {c.counter for conds in self.filters.values() for c in conds}

    def read_counters(self) -> set[str]:
        """Every counter a segment's conditions read (filtered or not)."""
        return {c.counter for seg in self.segments.values() for c in conditions(seg.where)
                if isinstance(c, EventCondition)}


def day_of(ms: int) -> int:
    return ms // DAY_MS


def visible(props: dict) -> dict:
    return {k: e[0] for k, e in props.items() if e[0] is not None}


def holds(cond, s: dict, props: dict, today: int) -> bool:
    """Whether a condition tree holds for the person's state on `today` (a day number)."""
    if isinstance(cond, EventCondition):
        counts = s["counts"].get(cond.counter, {})
        days = cond.days(today)
        n = sum(counts.values()) if days is None else sum(c for d, c in counts.items() if days[0] <= int(d) <= days[1])
        return cond.holds(n)
    if isinstance(cond, (PropertyCondition, CompanyCondition)):
        return cond.holds(props)
    items = cond.all if hasattr(cond, "all") else cond.any
    results = (holds(c, s, props, today) for c in items)
    return all(results) if hasattr(cond, "all") else any(results)


class SegmentLogic:
    """The Logic (udfs/persons.py) of segment_eval. A person's state: {"app", "person",
    "props", "counts", "in": [segments], "v": version, "now": the latest time evaluated,
    "wake": the next midnight to evaluate at, or None}."""

    def __init__(self, apps: dict[str, dict[str, Segment]], history_days: int = HISTORY_DAYS):
        self.apps = {app: AppSegments(segs) for app, segs in apps.items()}
        self.history_days = history_days

    def definitions(self, app: str) -> AppSegments:
        return self.apps.setdefault(app, AppSegments({}))

    def change_of(self, record: dict) -> tuple[str, str] | None:
        """The definition a control record changes ("app:name") and its app; None for another
        job's record (a campaign), BadRecord for a malformed one."""
        return definition_change(record, "segment", self.apps)

    def adopt(self, key: str, definition: dict | None) -> None:
        """Take in a changed definition (None deletes it); ValueError naming the segment and
        the condition when it is invalid, and the one before it stays."""
        app, _, name = key.partition(":")
        self.define(app, name, None if definition is None else parse_segment(name, definition))

    def define(self, app: str, name: str, segment: Segment | None) -> None:
        """A definition added, changed or (None) deleted while running."""
        segs = dict(self.definitions(app).segments)
        if segment is None:
            segs.pop(name, None)
        else:
            segs[name] = segment
        self.apps[app] = AppSegments(segs)

    # -- Logic ---------------------------------------------------------------------------
    def new(self, app: str, person: str) -> dict:
        return {"app": app, "person": person, "props": {}, "counts": {}, "in": [], "v": 0, "now": 0, "wake": None}

    def apply(self, s: dict, event: dict, ts: int, out) -> None:
        if event["kind"] == "merge":
            return
        defs = self.definitions(s["app"])
        s["now"] = max(s["now"], ts)
        touched = observe(s, defs, event, ts)
        if s["wake"] is not None and s["wake"] <= s["now"]:
            touched |= defs.windowed  # a midnight has passed since: the windows rolled
        self._evaluate(s, defs, touched, {"event_id": event["event_id"], "event": event["event"]}, out)

    def due(self, s: dict) -> int | None:
        return s.get("wake")

    def fire(self, s: dict, now: int, out) -> None:
        s["now"] = max(s["now"], now)
        defs = self.definitions(s["app"])
        self._evaluate(s, defs, defs.windowed, {"reason": "time"}, out)

    def combine(self, s: dict, other: dict, at: int, out) -> None:
        combine_facts(s, other)
        s["now"] = max(s["now"], other.get("now") or 0, at)
        defs = self.definitions(s["app"])
        self._evaluate(s, defs, set(defs.segments), {"reason": "merge", "merged": other.get("person")}, out)

    def leave(self, s: dict, at: int, reason: str, out) -> None:
        for name in list(s["in"]):
            self._record(s, name, "exited", at, {"reason": reason}, out)
        s["in"] = []

    def empty(self, s: dict) -> bool:
        return not s["counts"] and not s["props"] and not s["in"]

    def revisit(self, s: dict, now: int, out, cause: dict) -> None:
        """The definition of `cause["segment"]` was added, changed or deleted: the person is
        evaluated against it (each change its own cause, in whatever order changes of different
        segments arrive), and counters nothing reads any more are forgotten."""
        s["now"] = max(s["now"], now)
        self._evaluate(s, self.definitions(s["app"]), {cause["segment"]}, cause, out)

    # -- the work ------------------------------------------------------------------------
    def _evaluate(self, s: dict, defs: AppSegments, names, cause: dict, out) -> None:
        today = day_of(s["now"])
        if s.get("trimmed") != today or len(s["counts"]) > MAX_COUNTERS or cause.get("reason") == "definition":
            trim(s, defs, today, self.history_days)  # days age out once a day; a definition change may free counters
            s["trimmed"] = today
        props = visible(s["props"])
        members = set(s["in"])
        gone = members - set(defs.segments)  # deleted while the person could not be revisited (a merge)
        for name in sorted(set(names) | gone):
            seg = defs.segments.get(name)
            now_in = seg is not None and holds(seg.where, s, props, today)
            if now_in and name not in members:
                members.add(name)
                self._record(s, name, "entered", s["now"], cause, out)
            elif not now_in and name in members:
                members.discard(name)
                self._record(s, name, "exited", s["now"], cause, out)
        s["in"] = sorted(members)
        s["wake"] = self._next_wake(s, defs, today)

    def _next_wake(self, s: dict, defs: AppSegments, today: int) -> int | None:
        """The next midnight, if a window could change the person's membership then."""
        for cond in defs.windows:
            days = s["counts"].get(cond.counter)
            if days and any(int(d) > today - cond.within for d in days):
                return (today + 1) * DAY_MS
        return None

    @staticmethod
    def _record(s: dict, segment: str, change: str, ts: int, cause: dict, out) -> None:
        s["v"] += 1
        out("segments", f"{s['app']}:{s['person']}", {
            "app": s["app"], "segment": segment, "person_id": s["person"], "change": change, "ts": ts,
            "version": s["v"], "cause": cause}, ts)


# -- a person's facts: properties and event counts (segment_eval's, and workflow_runner's) --
def observe(s: dict, defs: AppSegments, event: dict, ts: int) -> set[str]:
    """Take an event into the person's `props` and `counts`; the names of `defs`' segments
    that read what changed."""
    data = event.get("data") or {}
    if event["kind"] == "set":
        stamp = [event["ts"], event["event_id"]]
        for key, value in data.items():
            old = s["props"].get(key)
            if old is None or stamp > old[1:]:
                s["props"][key] = [value, *stamp]
        return {seg for key in data for seg in defs.by_property.get(key, ())}
    day = str(min(day_of(event["ts"]), day_of(ts)))  # never a day after the log time
    _count(s, event["event"], day)
    for cond in defs.filters.get(event["event"], ()):
        if cond.matches(data):
            _count(s, cond.counter, day)
    return set(defs.by_event.get(event["event"], ()))


def _count(s: dict, counter: str, day: str) -> None:
    days = s["counts"].setdefault(counter, {})
    days[day] = days.get(day, 0) + 1


def combine_facts(s: dict, other: dict) -> None:
    """A merged-away person's properties (the newest value of each wins) and counts join."""
    for key, entry in (other.get("props") or {}).items():
        old = s["props"].get(key)
        if old is None or entry[1:] > old[1:]:
            s["props"][key] = entry
    for counter, days in (other.get("counts") or {}).items():
        mine = s["counts"].setdefault(counter, {})
        for day, n in days.items():
            mine[day] = mine.get(day, 0) + n


def trim(s: dict, defs: AppSegments, today: int, history_days: int) -> None:
    """Drop days past the history kept, counters no definition reads that have no days left,
    and the least recent counters past MAX_COUNTERS."""
    oldest = today - history_days
    filtered = defs.counters()
    for counter in list(s["counts"]):
        days = s["counts"][counter]
        for d in [d for d in days if int(d) < oldest]:
            del days[d]
        if not days or ("\x1f" in counter and counter not in filtered):
            del s["counts"][counter]
    if len(s["counts"]) > MAX_COUNTERS:  # keep the counters definitions read, then the most recent
        read = defs.read_counters()
        recent = sorted(s["counts"], key=lambda c: (c in read, max(int(d) for d in s["counts"][c])), reverse=True)
        for counter in recent[MAX_COUNTERS:]:
            del s["counts"][counter]
