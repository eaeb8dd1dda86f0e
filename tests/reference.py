"""Plain-Python answers computed from the envelopes themselves, to check the pipeline against."""
from __future__ import annotations

from collections import defaultdict

from udfs.envelope import CART_METHODS


def persons(envs) -> dict[tuple[str, str], str]:
    """(app, distinct id) -> canonical person: merges applied naively in (ts, event_id) order."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(x):
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    seen = set()
    for env in sorted(envs, key=lambda e: (e["ts"], e["event_id"])):
        app = env["app"]
        for key in ("id", "previous_id", "srcid", "destid"):
            if key in env:
                seen.add((app, env[key]))
        src = dest = None
        if env["type"] == "alias":
            src, dest = env["srcid"], env["destid"]
        elif env["type"] == "identify" and env.get("previous_id", "").startswith("a-") and env["previous_id"] != env["id"]:
            src, dest = env["previous_id"], env["id"]
        if src and src != dest:
            rs, rd = find((app, src)), find((app, dest))
            if rs != rd:
                parent[rs] = rd
    return {x: find(x)[1] for x in seen}


def events(envs):
    """(app, event name, distinct id, ts) of every track and cart call."""
    for env in envs:
        if env["type"] == "track":
            yield env["app"], env["action"], env["id"], env["ts"]
        elif env["type"] == "cart":
            yield env["app"], CART_METHODS[env["cart_action"]], env["id"], env["ts"]


def funnel(envs, app: str, steps: list[str], from_ms: int, to_ms: int, window_ms: int) -> list[int]:
    """People reaching each step: loose order, each step at or after the previous one (the
    same moment counts), all within `window_ms` of the step-1 event the person started from."""
    who = persons(envs)
    timeline = defaultdict(list)
    for a, name, did, ts in events(envs):
        if a == app and from_ms <= ts < to_ms and name in steps:
            timeline[who[(a, did)]].append((ts, name))
    reached = [0] * len(steps)
    for evs in timeline.values():
        evs.sort()
        best = 0
        for i, (t0, name) in enumerate(evs):
            if name != steps[0]:
                continue
            level, last = 1, t0
            for ts, n in evs[i + 1:]:
                if level < len(steps) and n == steps[level] and ts >= last and ts - t0 <= window_ms:
                    level, last = level + 1, ts
            best = max(best, level)
        for k in range(best):
            reached[k] += 1
    return reached


def people_did(envs, app: str, event: str, from_ms: int, to_ms: int) -> int:
    who = persons(envs)
    return len({who[(a, did)] for a, name, did, ts in events(envs) if a == app and name == event and from_ms <= ts < to_ms})


def event_day(envs, app: str, event: str, from_ms: int, to_ms: int) -> tuple[int, int]:
    """(distinct people, events) of `event` in [from_ms, to_ms)."""
    who = persons(envs)
    hits = [who[(a, did)] for a, name, did, ts in events(envs) if a == app and name == event and from_ms <= ts < to_ms]
    return len(set(hits)), len(hits)


def _timelines(envs, app, names, from_ms, to_ms):
    who = persons(envs)
    timeline = defaultdict(list)
    for a, name, did, ts in events(envs):
        if a == app and name in names and from_ms <= ts < to_ms:
            timeline[who[(a, did)]].append((ts, name))
    return {p: sorted(evs) for p, evs in timeline.items()}


def conversion(envs, app, a, b, from_ms, to_ms, repeatable) -> float:
    """Non-repeatable: people with a B at or after an A / people with an A. Repeatable: B
    events at or after the person's first A / A events."""
    num = den = 0
    for evs in _timelines(envs, app, {a, b}, from_ms, to_ms).values():
        a_times = [t for t, n in evs if n == a]
        if not a_times:
            continue
        if repeatable:
            den += len(a_times)
            num += sum(1 for t, n in evs if n == b and t >= a_times[0])
        else:
            den += 1
            num += any(n == b and t >= a_times[0] for t, n in evs)
    return num / den if den else 0.0


def time_between(envs, app, a, b, from_ms, to_ms) -> tuple[int, float]:
    """(people who did A then B, average seconds from their first A to the first B after it)."""
    waits = []
    for evs in _timelines(envs, app, {a, b}, from_ms, to_ms).values():
        a_times = [t for t, n in evs if n == a]
        if a_times:
            after = [t for t, n in evs if n == b and t >= a_times[0]]
            if after:
                waits.append((after[0] - a_times[0]) / 1000)
    return len(waits), (sum(waits) / len(waits) if waits else 0.0)


PREDEFINED_STRINGS = ("email", "first_name", "last_name", "profile_image")


def property_sets(envs, app: str, until_ms: int):
    """(person, key, value, ts, event_id) of every property set before `until_ms`; a
    predefined property that is not a string is rejected, as identity_merge does."""
    who = persons(envs)
    for env in envs:
        if env["app"] == app and env["type"] == "set" and env["ts"] < until_ms:
            for key, value in env["data"].items():
                if key in PREDEFINED_STRINGS and value is not None and not isinstance(value, str):
                    continue
                yield who[(app, env["id"])], key, value, env["ts"], env["event_id"]


def profiles_at(envs, app: str, until_ms: int) -> dict[str, dict]:
    """Each person's properties as of `until_ms`: the latest (ts, event_id) set per key wins."""
    latest: dict[tuple[str, str], tuple] = {}
    for person, key, value, ts, eid in property_sets(envs, app, until_ms):
        if (person, key) not in latest or (ts, eid) > latest[(person, key)][1:]:
            latest[(person, key)] = (value, ts, eid)
    out: dict[str, dict] = defaultdict(dict)
    for (person, key), (value, _, _) in latest.items():
        if value is not None:
            out[person][key] = value
    return out


def _number(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def meets(props: dict, criteria) -> bool:
    for c in criteria:
        here = props.get(c.property)
        a, b = _number(here), _number(c.value)
        same = here is not None and (here == c.value if a is None or b is None else a == b)
        ok = {"set": here is not None, "not_set": here is None, "eq": same, "ne": not same,
              "gt": a is not None and b is not None and a > b, "gte": a is not None and b is not None and a >= b,
              "lt": a is not None and b is not None and a < b, "lte": a is not None and b is not None and a <= b}[c.op]
        if not ok:
            return False
    return True


def property_total(envs, app: str, prop: str, criteria, until_ms: int) -> tuple[float, int]:
    """(total of `prop` over people meeting `criteria`, how many people) as of `until_ms`."""
    values = [_number(p.get(prop)) for p in profiles_at(envs, app, until_ms).values() if meets(p, criteria)]
    values = [v for v in values if v is not None]
    return sum(values), len(values)


def property_divisor(envs, app: str, prop: str, divide_by: str, event: str | None, until_ms: int) -> int:
    """People seen, people who did `event`, or times `prop` was set to a value, before `until_ms`."""
    who = persons(envs)
    if divide_by == "sets":
        return sum(1 for _, key, value, _, _ in property_sets(envs, app, until_ms) if key == prop and value is not None)
    seen = {who[(a, did)] for a, name, did, ts in events(envs)
            if a == app and ts < until_ms and (divide_by == "people" or name == event)}
    if divide_by == "people":
        seen |= {person for person, *_ in property_sets(envs, app, until_ms)}
    return len(seen)
