"""Freshness and metric_rollup's write rate, on the embedded stack (real Kafka, Flink, chDB).

1. Rows/s written by metric_rollup: a bounded run over N generated resolved events, its
   wall time less that of the same job over empty topics (the mini-cluster's start-up),
   against a plain `INSERT … SELECT` of the same rows in the same warehouse as the baseline.
2. Freshness: identity_merge and metric_rollup run unbounded (as `python -m jobs.NAME`, the
   shipped settings but for the topics and paths) under a steady background load of
   generated calls; every half second a probe event is sent to tracktor.raw, and a reader
   polls the people_did_event metric through the warehouse's owner (the rollup) until it
   counts the probe. Freshness = counted − acknowledged by Kafka; p50 and p99.

    bin/tracktor setup && .venv/bin/python bench/freshness.py [--rows 200000] [--probes 120]
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobs import metric_rollup  # noqa: E402
from tests.conftest import make_config  # noqa: E402
from tracktor.analytics import queries as analytics  # noqa: E402
from tracktor.dev import envelopes as E, loader, stack  # noqa: E402
from tracktor import warehouse  # noqa: E402
from tracktor.config import metric_from  # noqa: E402
from tracktor.flink.environment import stream_env  # noqa: E402
from tracktor.dev.kafka_local import LocalKafka  # noqa: E402
from tracktor.dev.sample_data import Generator  # noqa: E402
from tracktor.warehouse.shared import owner_file  # noqa: E402
from udfs.envelope import CART_METHODS  # noqa: E402

PROBE = "Freshness probe"


def resolved(envs):
    """tracktor.events records for generated calls (each id its own person: the rollup's
    work does not depend on merges)."""
    for e in envs:
        if e["type"] in ("track", "cart"):
            name = e["action"] if e["type"] == "track" else CART_METHODS[e["cart_action"]]
            yield {"event_id": e["event_id"], "app": e["app"], "kind": e["type"], "event": name,
                   "distinct_id": e["id"], "person_id": e["id"], "ts": e["ts"], "received_at": e["received_at"],
                   "data": e.get("data") or {}}


def rollup_rate(tmp: Path, bootstrap: str, rows: int) -> dict:
    envs = list(Generator(seed=3, people=max(1, rows // 12)))
    records = list(resolved(envs))[:rows]
    walls = {}
    for name, payload in (("empty", []), ("full", records)):
        (tmp / name).mkdir()
        cfg = make_config(tmp / name, f"rate-{name}", bootstrap)
        stack.ensure_topics(bootstrap, cfg.topics, 2)
        if payload:
            loader.send(bootstrap, cfg.topics["events"], payload, total=len(payload), label="resolved events sent")
        env, t_env = stream_env(cfg.flink.model_copy(update={"execution_mode": "process"}), f"rate-{name}")
        t = time.monotonic()
        metric_rollup.build(env, t_env, bootstrap, cfg.topics, cfg.clickhouse, bounded=True).wait()
        metric_rollup.wait_for_writer(cfg.clickhouse)
        walls[name] = time.monotonic() - t
    client = warehouse.connect(cfg.clickhouse)
    db = cfg.clickhouse.database
    stored = client.query(f"SELECT count() FROM {db}.events").result_rows[0][0]
    client.command(f"CREATE TABLE {db}.events_copy AS {db}.events")
    t = time.monotonic()
    client.command(f"INSERT INTO {db}.events_copy SELECT * FROM {db}.events")
    copy_s = time.monotonic() - t
    client.close()
    rate = stored / (walls["full"] - walls["empty"])
    base = stored / copy_s
    print(f"metric_rollup: {stored:,} rows in {walls['full']:.1f}s, {walls['empty']:.1f}s of it start-up "
          f"-> {rate:,.0f} rows/s", flush=True)
    print(f"baseline INSERT ... SELECT of the same rows: {base:,.0f} rows/s; ratio {rate / base:.4f}", flush=True)
    return {"rollup_rows_per_s": round(rate), "insert_select_rows_per_s": round(base), "ratio": round(rate / base, 4),
            "rows": stored}


def freshness(tmp: Path, bootstrap: str, probes: int, load_per_s: int) -> dict:
    (tmp / "fresh").mkdir()
    cfg = make_config(tmp / "fresh", "fresh", bootstrap, checkpoint_interval_ms=5000)
    stack.ensure_topics(bootstrap, cfg.topics, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYFLINK")}
    jobs = [subprocess.Popen([sys.executable, "-m", f"jobs.{name}", "--config", str(cfg.path)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.log", "w"))
            for name in ("identity_merge", "metric_rollup")]
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    stop = threading.Event()

    def background():
        gen = iter(Generator(seed=9, people=1_000_000, start_ms=int(time.time() * 1000), days=1))
        while not stop.is_set():
            t = time.monotonic()
            for _ in range(load_per_s // 10):
                e = next(gen)
                producer.send(cfg.topics["raw"], key=e["app"].encode(), value=json.dumps(e).encode())
            stop.wait(max(0.0, 0.1 - (time.monotonic() - t)))

    def probe(i: int) -> float:
        now = int(time.time() * 1000)
        e = E.track("demo-video", f"probe-{i}", PROBE, now, received_at=now)
        producer.send(cfg.topics["raw"], key=b"demo-video", value=json.dumps(e).encode()).get(timeout=30)
        return time.monotonic()

    try:
        # the writer opens the warehouse with its first record: start the load, then wait for it
        threading.Thread(target=background, daemon=True).start()
        path = Path(cfg.clickhouse.dsn[len("chdb://"):])
        deadline = time.monotonic() + 180
        while not owner_file(path).exists():
            if time.monotonic() > deadline or any(j.poll() is not None for j in jobs):
                raise RuntimeError(f"the jobs did not start; see {tmp}/*.log")
            time.sleep(0.2)
        client = warehouse.connect(cfg.clickhouse)
        db = cfg.clickhouse.database
        warehouse.migrate(client, db)  # the writer may still be migrating: idempotent, through the owner
        metric = metric_from("probes", {"type": "times_event_happened", "event": PROBE})
        today = datetime.now(timezone.utc).date()

        def counted() -> int:
            return int(analytics.metric(client, db, "demo-video", metric, today, today).total)

        # warm up: the first probe also waits for the jobs' first checkpoints
        t0 = probe(-1)
        while counted() < 1:
            if time.monotonic() - t0 > 300:
                raise RuntimeError("the warm-up probe never arrived")
            time.sleep(0.2)
        print(f"pipeline running; first probe counted after {time.monotonic() - t0:.1f}s (start-up included)", flush=True)

        acked, seen = [], [None] * probes
        sent_all = threading.Event()

        def send_probes():
            for i in range(probes):
                acked.append(probe(i))
                time.sleep(0.5)
            sent_all.set()

        threading.Thread(target=send_probes, daemon=True).start()
        last = time.monotonic() + 600
        while time.monotonic() < last:
            n = counted() - 1  # less the warm-up probe
            now = time.monotonic()
            for i in range(min(n, len(acked))):
                if seen[i] is None:
                    seen[i] = now
            if sent_all.is_set() and all(s is not None for s in seen):
                break
            time.sleep(0.05)
        client.close()
    finally:
        stop.set()
        producer.close()
        for j in jobs:
            j.terminate()
        for j in jobs:
            j.wait(timeout=60)
    lags = sorted(s - a for s, a in zip(seen, acked) if s is not None)
    if len(lags) < probes:
        print(f"only {len(lags)} of {probes} probes were counted within the time limit", flush=True)
    p50 = statistics.median(lags)
    p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))]
    print(f"freshness over {len(lags)} probes under {load_per_s} calls/s of background load, checkpoints every 5 s: "
          f"p50 {p50:.2f}s  p99 {p99:.2f}s  max {lags[-1]:.2f}s", flush=True)
    return {"probes": len(lags), "p50_s": round(p50, 2), "p99_s": round(p99, 2), "max_s": round(lags[-1], 2),
            "background_calls_per_s": load_per_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000, help="resolved events for the write-rate run")
    ap.add_argument("--probes", type=int, default=120, help="freshness probes, one every 0.5 s")
    ap.add_argument("--load", type=int, default=300, help="background calls per second during the probes")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-freshness-"))
    atexit.register(shutil.rmtree, tmp, True)
    with LocalKafka(tmp / "kafka") as broker:
        out = {"write_rate": rollup_rate(tmp, broker.bootstrap_servers, args.rows),
               "freshness": freshness(tmp, broker.bootstrap_servers, args.probes, args.load)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
