"""Query latency on chDB: a 4-step funnel and each metric type over N generated events.

The events are made by SQL (INSERT … SELECT from numbers(); its rate is printed too), with
10 events per person over 7 days and one person in ten owning a second, merged distinct
id, so the queries pay for re-attribution through the identities table; each person also
has two property sets (a number `spent` set twice, `plan` once), for the property metrics.
The daily event rollup (event_daily) is filled by its materialized view as events go in.
Baseline: a plain scan of the same events (uniqExact persons of the app's events, no
re-attribution); each query's time is printed with its ratio to that scan.

    bin/tracktor bench --only queries [--quick]   (or .venv/bin/python bench/queries.py [--events 1000000 10000000])
"""
from __future__ import annotations

import atexit
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, arguments, report  # noqa: E402
from tracktor.analytics import queries as analytics  # noqa: E402
from tracktor import warehouse  # noqa: E402
from tracktor.config import Criterion, Funnel, metric_from  # noqa: E402

DB, APP = "tracktor", "bench"
STEPS = ("Site visit", "Free movie view", "Registration", "Upgrade to Premium")
FIRST, LAST = date(2026, 1, 1), date(2026, 1, 7)


def fill(client, events: int) -> float:
    """Insert `events` events and the identities of the merged ids; returns rows/s."""
    people = max(1, events // 10)
    t = time.monotonic()
    client.command(f"""
        INSERT INTO {DB}.events
        SELECT '{APP}', toString(number), 'track',
               ['Site visit', 'Free movie view', 'Registration', 'Upgrade to Premium', 'Other']
                   [1 + least(intDiv(number, {people}), cityHash64(number) % 5)],
               if(intDiv(number, {people}) >= 5 AND number % {people} % 10 = 0,
                  concat('a-', toString(number % {people})), concat('u', toString(number % {people}))),
               concat('u', toString(number % {people})),
               toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalSecond((number % {people}) % 518400 + intDiv(number, {people}) * 600),
               toDateTime64('2026-01-01 00:00:00', 3, 'UTC'), '{{}}'
        FROM numbers({events})
        SETTINGS async_insert = 0""")
    rate = events / (time.monotonic() - t)
    client.command(f"""
        INSERT INTO {DB}.identities
        SELECT '{APP}', concat('a-', toString(number * 10)), concat('u', toString(number * 10)), 1,
               toDateTime64('2026-01-01 00:00:00', 3, 'UTC'), 'm'
        FROM numbers({max(1, people // 10)}) SETTINGS async_insert = 0""")
    client.command(f"""
        INSERT INTO {DB}.property_sets
        SELECT '{APP}', concat('u', toString(number % {people})), if(number < {people}, 'plan', 'spent'),
               if(number < {people}, if(number % 3 = 0, '"premium"', '"free"'), toString(number % 997)),
               toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalSecond(cityHash64(number) % 604800),
               concat('s', toString(number))
        FROM numbers({3 * people}) SETTINGS async_insert = 0""")
    client.command(f"OPTIMIZE TABLE {DB}.events FINAL")
    return rate


def timed(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.monotonic()
        fn()
        times.append(time.monotonic() - t)
    return statistics.median(times)


def main() -> None:
    ap = arguments(__doc__)
    ap.add_argument("--events", type=int, nargs="+", default=None, help="default 1M and 10M (quick: 200k)")
    args = ap.parse_args()
    sizes = args.events or ([200_000] if args.quick else [1_000_000, 10_000_000])
    figures = []
    metrics = [metric_from("people", {"type": "people_did_event", "event": "Site visit"}),
               metric_from("times", {"type": "times_event_happened", "event": "Site visit"}),
               metric_from("avg", {"type": "avg_times_per_person", "event": "Site visit"}),
               metric_from("conv", {"type": "conversion_rate", "event_a": "Registration", "event_b": "Upgrade to Premium"}),
               metric_from("conv-r", {"type": "conversion_rate", "event_a": "Registration", "event_b": "Upgrade to Premium",
                                                    "repeatable": True}),
               metric_from("wait", {"type": "avg_time_between", "event_a": "Site visit", "event_b": "Upgrade to Premium"}),
               metric_from("total", {"type": "total_property_value", "property": "spent",
                                                        "criteria": (Criterion(property="plan", op="eq", value="premium"),)}),
               *[metric_from("avg-" + d, {"type": "average_property_value", "property": "spent", "divide_by": d,
                                                                **({"event": "Registration"} if d == "event_people" else {})})
                 for d in ("people", "event_people", "sets")]]
    for n in sizes:
        path = Path(tempfile.mkdtemp(prefix="bench-queries-"))
        atexit.register(shutil.rmtree, path, True)
        client = warehouse.connect(f"chdb://{path / 'wh'}")
        warehouse.migrate(client, DB)
        rate = fill(client, n)
        size = f"{n / 1e6:g}M"
        print(f"\n{n:,} events ({n // 10:,} people): INSERT … SELECT {rate:,.0f} rows/s", flush=True)
        figures.append(Figure("queries", f"INSERT … SELECT events, {size}", rate, "rows/s"))
        base = timed(lambda: client.query(f"SELECT uniqExact(person_id) FROM {DB}.events WHERE app = {{a:String}}",
                                          parameters={"a": APP}))
        print(f"  {'baseline scan (uniqExact persons)':42s} {base:7.3f} s", flush=True)
        funnel = Funnel.of("f", STEPS, None)
        steps = analytics.funnel(client, DB, APP, funnel, FIRST, LAST)
        t = timed(lambda: analytics.funnel(client, DB, APP, funnel, FIRST, LAST))
        print(f"  {'4-step funnel (' + ' / '.join(f'{s.people:,}' for s in steps) + ')':42s} {t:7.3f} s  {t / base:5.1f}x", flush=True)
        scan = f"plain scan (uniqExact persons), {size}"
        figures.append(Figure("queries", f"4-step funnel, {size}", t, "s", scan, base, lower_is_better=True))
        filtered = Funnel.of("f", STEPS, None, step_filters=((), (Criterion(property="page", op="not_set"),)),
                          people=(Criterion(property="plan", op="ne", value="gold"),))
        t = timed(lambda: analytics.funnel(client, DB, APP, filtered, FIRST, LAST))
        print(f"  {'4-step funnel with step and person filters':42s} {t:7.3f} s  {t / base:5.1f}x", flush=True)
        figures.append(Figure("queries", f"funnel with filters, {size}", t, "s", scan, base, lower_is_better=True))
        for m in metrics:
            t = timed(lambda: analytics.metric(client, DB, APP, m, FIRST, LAST))
            label = m.type + (' repeatable' if m.params.get('repeatable') else '') + \
                (f" / {m.params['divide_by']}" if "divide_by" in m.params else "")
            print(f"  {'metric ' + label:42s} {t:7.3f} s  {t / base:5.1f}x", flush=True)
            figures.append(Figure("queries", f"{label}, {size}", t, "s", scan, base, lower_is_better=True))
        client.close()
        shutil.rmtree(path, ignore_errors=True)
    report(figures)


if __name__ == "__main__":
    main()
