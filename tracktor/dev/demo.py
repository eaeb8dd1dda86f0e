"""The quick-start demo: sample data through the HTTP collector into Kafka, both Flink jobs,
answers from ClickHouse.

It works in .data/demo (wiped each run): its own broker when the config says 'embedded'
(stopped at the end), its own chDB warehouse and checkpoints, so it never touches the data
of a pipeline you run yourself.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from datetime import datetime, timedelta, timezone

from tracktor.analytics import queries as analytics, report
from tracktor.dev import loader, stack
from tracktor import warehouse
from tracktor.collector.server import Collector
from tracktor.config import Config
from tracktor.progress import step
from tracktor.dev.sample_data import Generator


def demo_config(cfg: Config) -> Config:
    root = cfg.data_dir / "demo"
    return dataclasses.replace(
        cfg,
        data_dir=root,
        clickhouse={**cfg.clickhouse, "dsn": f"chdb://{root / 'warehouse'}"},
        flink={**cfg.flink, "checkpoint_dir": str(root / "checkpoints")},
    )


def run_demo(cfg: Config, people: int = 2000, seed: int = 1) -> int:
    from jobs import identity_merge, metric_rollup

    cfg = demo_config(cfg)
    shutil.rmtree(cfg.data_dir, ignore_errors=True)
    cfg.data_dir.mkdir(parents=True)
    today = datetime.now(timezone.utc).date()
    start = datetime(today.year, today.month, today.day, tzinfo=timezone.utc) - timedelta(days=6)
    timings = {}

    t = time.monotonic()
    step("starting Kafka" if cfg.kafka["bootstrap_servers"] == stack.EMBEDDED else "using the configured Kafka")
    with stack.kafka_for(cfg, cfg.data_dir / "kafka") as bootstrap:
        stack.ensure_topics(bootstrap, cfg.topics, cfg.kafka["partitions"])
        timings["kafka start"] = time.monotonic() - t

        step(f"sending sample data through the HTTP collector: {people:,} visitors per app, seed {seed}, last 7 days")
        t = time.monotonic()
        gen = Generator(seed=seed, people=people, apps={"demo-video": "video", "demo-shop": "shop"},
                        start_ms=int(start.timestamp() * 1000), days=6)
        collector = Collector(cfg, bootstrap, port=0).start()
        try:
            sent = loader.post_batches(collector.address, gen, label=f"tracking calls posted to {collector.address}/batch")
        finally:
            collector.stop()
        timings["send"] = time.monotonic() - t

        for name, job in (("identity_merge", identity_merge), ("metric_rollup", metric_rollup)):
            step(f"running jobs/{name}.py on a local Flink mini-cluster (bounded: stops at the end of its input)")
            t = time.monotonic()
            job.run(cfg, bootstrap, bounded=True)
            timings[name] = time.monotonic() - t
            print(f"    {name} finished in {timings[name]:.1f}s", flush=True)

    step("reading the answers from ClickHouse (chDB)")
    client = warehouse.connect(cfg.clickhouse["dsn"])
    db = cfg.clickhouse["database"]
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
            about += "".join(f", {c.property} {c.op} {c.value!r}" for c in m.params.get("criteria", ()))
            print(report.metric_table(f"Metric {m.name} ({m.type}: {about})", result) + "\n")
    client.close()
    print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()) + f"; {sent:,} calls")
    return 0
