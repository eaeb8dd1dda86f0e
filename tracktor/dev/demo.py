"""The quick-start demo: a week of sample history loaded into Kafka with the calls' own times
(as a backfill), the last hours' calls through the HTTP collector, every Flink job, answers
from ClickHouse.

It works in .data/demo (wiped each run): its own broker when the config says 'embedded'
(stopped at the end), its own chDB warehouse and checkpoints, so it never touches the data
of a pipeline you run yourself. It leaves .data/demo/tracktor.yaml behind, the configuration
of that data, so `bin/tracktor --config .data/demo/tracktor.yaml report …` (or serve) explores
what the demo computed; its last lines print those commands.
"""
from __future__ import annotations

import shutil
import time
from datetime import datetime, timedelta, timezone

import yaml

from tracktor import ROOT, config, warehouse
from tracktor.analytics import queries as analytics, report
from tracktor.collector.server import Collector
from tracktor.config import EMBEDDED, Config
from tracktor.dev import loader, stack
from tracktor.dev.sample_data import Generator
from tracktor.progress import step
from tracktor.topics import ensure_topics


RECENT_MS = 2 * 3600 * 1000  # the calls of the last two hours go through the collector, as live traffic


def demo_config(cfg: Config) -> Config:
    """The configuration with its data in <data_dir>/demo, written there as tracktor.yaml."""
    root = cfg.data_dir / "demo"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    tree = yaml.safe_load(cfg.path.read_text())
    tree["data_dir"] = str(root)
    tree["clickhouse"]["dsn"] = f"chdb://{root / 'warehouse'}"
    tree.setdefault("flink", {})["checkpoint_dir"] = str(root / "checkpoints")
    path = root / "tracktor.yaml"
    path.write_text(f"# Written by `bin/tracktor demo` from {cfg.path}: the demo's data.\n"
                    + yaml.safe_dump(tree, sort_keys=False, allow_unicode=True))
    return config.load(path)


def _shown(path) -> str:
    """A path as the user would type it from the project's folder."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def run_demo(cfg: Config, people: int = 2000, seed: int = 1) -> Config:
    """Runs the demo and returns the configuration of its data (.data/demo/tracktor.yaml)."""
    import jobs
    from tracktor.flink import runner

    cfg = demo_config(cfg)
    today = datetime.now(timezone.utc).date()
    start = datetime(today.year, today.month, today.day, tzinfo=timezone.utc) - timedelta(days=6)
    timings = {}

    t = time.monotonic()
    step("starting Kafka" if cfg.kafka.bootstrap_servers == EMBEDDED else "using the configured Kafka")
    with stack.kafka_for(cfg, cfg.data_dir / "kafka") as bootstrap:
        ensure_topics(bootstrap, cfg.kafka)
        timings["kafka start"] = time.monotonic() - t

        t = time.monotonic()
        now = int(time.time() * 1000)
        calls = sorted((e for e in Generator(seed=seed, people=people, apps={"demo-video": "video", "demo-shop": "shop"},
                                             start_ms=int(start.timestamp() * 1000), days=7) if e["ts"] <= now),
                       key=lambda e: e["received_at"])
        recent = now - RECENT_MS
        step(f"loading the sample history: {people:,} visitors per app, seed {seed}, the last 7 days (as a backfill "
             "would, each call at its own time)")
        sent = loader.send(bootstrap, cfg.topics["raw"], [e for e in calls if e["ts"] < recent], label="calls loaded")
        loader.send_heartbeat(bootstrap, cfg.topics["raw"], recent)
        collector = Collector(cfg, bootstrap, port=0).start()
        try:
            step("sending the last two hours' calls through the HTTP collector")
            sent += loader.post_batches(collector.address, [e for e in calls if e["ts"] >= recent],
                                        label=f"tracking calls posted to {collector.address}/batch")
            time.sleep(2 * cfg.collector.heartbeat_interval_ms / 1000)  # its clock reaches the raw topic
        finally:
            collector.stop()
        timings["send"] = time.monotonic() - t

        for name in jobs.NAMES:
            step(f"running jobs/{name}.py on a local Flink mini-cluster (bounded: stops at the end of its input)")
            t = time.monotonic()
            runner.run(jobs.load(name), cfg, bootstrap, bounded=True)
            timings[name] = time.monotonic() - t
            print(f"    {name} finished in {timings[name]:.1f}s", flush=True)

    step("reading the answers from ClickHouse (chDB)")
    client = warehouse.connect(cfg.clickhouse)
    db = cfg.clickhouse.database
    first, last = analytics.date_range("last-7-days", today=today)
    for app in cfg.apps.values():
        counts = client.query(warehouse.query_template("app_summary", db), parameters={
            "app": app.sid, "from_ts": start - timedelta(days=1), "to_ts": start + timedelta(days=9)}).result_rows[0]
        print(f"\n{app.name} ({app.sid}): {counts[0]:,} events from {counts[1]:,} people after identity merges\n")
        for f in app.funnels.values():
            steps = analytics.funnel(client, db, app.sid, f, first, last)
            print(report.funnel_table(f"Funnel {f.name}, {first} .. {last}", steps) + "\n")
        for m in app.metrics.values():
            result = analytics.metric(client, db, app.sid, m, first, last)
            about = ", ".join(f"{k} {v!r}" for k, v in m.params.items() if k != "criteria")
            about += "".join(f", {c.property} {c.op} {c.value!r}" for c in getattr(m, "criteria", ()))
            print(report.metric_table(f"Metric {m.name} ({m.type}: {about})", result) + "\n")
        for name in app.segments:
            seg = analytics.segment(client, db, app.sid, name, first, last, limit=0)
            print(f"Segment {name}: {seg.count:,} members now; at the end of each day: "
                  + ", ".join(f"{n:,}" for _, n in seg.days))
        for name in app.campaigns:
            c = analytics.campaign(client, db, app.sid, name, limit=0)
            print(f"Campaign {name}: entries per block " + (", ".join(f"{b['block']} {b['entered']:,}" for b in c.blocks)
                                                            or "none yet")
                  + " (its actions wait on tracktor.actions for `bin/tracktor deliver`)")
    client.close()
    print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()) + f"; {sent:,} calls")
    shown = _shown(cfg.path)
    print(f"\nThe demo's data stays in {_shown(cfg.data_dir)} until the next demo. Explore it:")
    for command in ("report funnel video_journey --app demo-video --range last-7-days",
                    "report metric site_visitors --app demo-video --range last-7-days",
                    "report funnel checkout --app demo-shop --range last-7-days --people 3 --dropped",
                    "report segment big_spenders --app demo-shop --range last-7-days",
                    "report campaign free_movie_fans --app demo-video",
                    "serve"):
        print(f"  bin/tracktor --config {shown} {command}")
    print(f"The last one serves the dashboard at http://{cfg.api.host}:{cfg.api.port}/ (`bin/tracktor demo --serve` "
          f"does at the end of the demo): sign in with an app's sid and its read_token from {_shown(cfg.path)}.")
    return cfg
