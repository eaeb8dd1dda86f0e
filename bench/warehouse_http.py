"""The cost of the embedded warehouse's HTTP interface: the same queries and inserts by its
owner in-process and by another process through the endpoint (clickhouse-connect's HTTP
client, as every Tracktor process but the owner uses it).

The warehouse is filled as bench/queries.py does (N events, 10 per person, over 7 days).
Printed: the median time of `SELECT 1`, a 4-step funnel and two metrics each way, with the
endpoint's ratio to the owner's; then the insert rate of events rows in 10k- and 100k-row
batches each way, as Arrow blocks (the writer's path, warehouse.insert_rows).

    bin/tracktor bench --only warehouse_http [--quick]   (or .venv/bin/python bench/warehouse_http.py [--events N])
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Figure, arguments, report  # noqa: E402
from bench.queries import APP, DB, FIRST, LAST, STEPS, fill, timed  # noqa: E402
from tracktor import warehouse  # noqa: E402
from tracktor.analytics import queries as analytics  # noqa: E402
from tracktor.config import Funnel, metric_from  # noqa: E402
from tracktor.config.settings import ClickHouseSettings  # noqa: E402
from tracktor.warehouse.tables import arrow_block  # noqa: E402

FUNNEL = Funnel.of("f", STEPS, None)
METRICS = {"people_did_event": {"type": "people_did_event", "event": "Site visit"},
           "conversion_rate": {"type": "conversion_rate", "event_a": "Registration", "event_b": "Upgrade to Premium"}}
BATCHES = (10_000, 100_000)


def measure(client) -> dict[str, float]:
    """Seconds per query (median of 3) and rows/s per insert batch size (median of 5, after
    one more), through `client`."""
    out = {"SELECT 1": timed(lambda: client.query("SELECT 1"), runs=20),
           "4-step funnel": timed(lambda: analytics.funnel(client, DB, APP, FUNNEL, FIRST, LAST))}
    for name, definition in METRICS.items():
        metric = metric_from(name, definition)
        out[f"metric {name}"] = timed(lambda: analytics.metric(client, DB, APP, metric, FIRST, LAST))
    for size in BATCHES:
        rows = [[APP, f"x{i}", "track", "Other", f"x{i}", f"x{i}", 1_767_225_600_000 + i,
                 1_767_225_600_000, "{}"] for i in range(size)]
        block = arrow_block("events", rows)  # as the writer inserts (warehouse.insert_rows)
        insert = lambda: client.insert_arrow(f"{DB}.bench_events", block)  # noqa: E731
        insert()  # warm-up
        out[f"insert {size:,}-row batches"] = size / timed(insert, runs=5)
    return out


def main() -> None:
    ap = arguments(__doc__)
    ap.add_argument("--events", type=int, default=None, help="default 1M (quick: 100k)")
    ap.add_argument("--measure", metavar="DSN", help=argparse.SUPPRESS)  # the other process's part
    args = ap.parse_args()
    args.events = args.events or (100_000 if args.quick else 1_000_000)
    if args.measure:
        client = warehouse.connect(args.measure)
        assert type(client).__name__ == "SharedClient", "the bench's owner went away"
        print(json.dumps(measure(client)))
        return
    path = Path(tempfile.mkdtemp(prefix="bench-http-"))
    try:
        owner = warehouse.connect(ClickHouseSettings(dsn=f"chdb://{path / 'wh'}", http={"port": 0}))
        warehouse.migrate(owner, DB)
        rate = fill(owner, args.events)
        owner.command(f"CREATE TABLE {DB}.bench_events AS {DB}.events")
        print(f"{args.events:,} events: INSERT … SELECT {rate:,.0f} rows/s; owner in-process vs another process "
              f"through the HTTP interface (port {owner.endpoint.port})", flush=True)
        mine = measure(owner)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYFLINK")}
        theirs = json.loads(subprocess.run(
            [sys.executable, __file__, "--measure", f"chdb://{path / 'wh'}"], cwd=ROOT, env=env, check=True,
            capture_output=True, text=True).stdout)
        owner.close()
        figures = []
        for name, own in mine.items():
            rate = name.startswith("insert")
            unit, scale = ("rows/s", 1) if rate else ("ms", 1000)
            figures.append(Figure("warehouse_http", f"{name} over HTTP", theirs[name] * scale, unit,
                                  "the owner in-process (chDB)", own * scale, lower_is_better=not rate))
        report(figures)
    finally:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
