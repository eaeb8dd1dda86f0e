"""Freshness and metric_rollup's write rate, on the embedded stack (real Kafka, Flink, chDB).

1. Rows/s written by metric_rollup over N generated resolved events: its WarehouseWriter
   driven directly over bundles (the writer alone, with its time per row in two parts), and
   the job itself bounded (wall time less that of the same job over empty topics, the
   mini-cluster's start-up), beside the same job with a writer that writes nothing (its
   own start-up subtracted likewise). Baseline: `INSERT … SELECT` of the same rows in the
   same warehouse, in one statement, from a table holding them in arrival order (the sort
   every insert pays) into the events table with its views (the writer's own work but for
   reading records, in bundles of 20k), and for reference into a bare copy of it, from
   arrival order and already sorted.
2. Freshness: every job of the pipeline runs unbounded (as `bin/tracktor job NAME`, the
   shipped settings but for the topics, paths and the checkpoint interval) under a steady
   offered load of generated calls; every half second a probe event is sent to tracktor.raw,
   and a reader polls a times_event_happened metric through the warehouse's owner (the
   rollup) until it counts the probe. Freshness = counted − acknowledged by Kafka; p50, p99,
   beside the checkpoint interval (a job's output is readable once its checkpoint commits).
   With each probe go a purchase and a property set by new people of the shop demo: the
   time from their acknowledgement to cart_timeout's `Cart purchased` on tracktor.derived
   and segment_eval's big_spenders entry on tracktor.segments (read_committed) is the
   latency from a call to its derived records.

    bin/tracktor bench --only freshness [--quick]   (or .venv/bin/python bench/freshness.py [--rows N])
"""
from __future__ import annotations

import atexit
import itertools
import json
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

from bench.common import Figure, arguments, report  # noqa: E402
from jobs import metric_rollup  # noqa: E402
from tests.conftest import clean_env, make_config  # noqa: E402
from tracktor.analytics import queries as analytics  # noqa: E402
from tracktor.dev import envelopes as E, loader  # noqa: E402
from tracktor.topics import ensure_topics  # noqa: E402
from tracktor import warehouse  # noqa: E402
from tracktor.config import metric_from  # noqa: E402
from tracktor.flink import runner  # noqa: E402
from tracktor.flink.bundling import collector_paused  # noqa: E402
from tracktor.dev.kafka_local import LocalKafka  # noqa: E402
from tracktor.dev.sample_data import Generator  # noqa: E402
from tracktor.warehouse.shared import owner_file  # noqa: E402
from udfs.envelope import CART_METHODS  # noqa: E402

PROBE = "Freshness probe"
CART_PROBE, SEGMENT_PROBE = "cart-probe-", "segment-probe-"  # the derived records' probe people


def resolved(envs):
    """tracktor.events records for generated calls (each id its own person: the rollup's
    work does not depend on merges)."""
    for e in envs:
        if e["type"] in ("track", "cart"):
            name = e["action"] if e["type"] == "track" else CART_METHODS[e["cart_action"]]
            yield {"event_id": e["event_id"], "app": e["app"], "kind": e["type"], "event": name,
                   "distinct_id": e["id"], "person_id": e["id"], "ts": e["ts"], "received_at": e["received_at"],
                   "data": e.get("data") or {}}


def copy_rates(client, db: str, stored: int) -> dict[str, float]:
    """rows/s of `INSERT … SELECT` of the events table's rows, three ways:
    - "same table": into the events table itself (emptied first), with the materialized
      views every insert into it feeds, from a Memory table holding the rows in the order
      they arrived. This is exactly the writer's work but for reading the records: its fair
      baseline;
    - "bare copy": the same into an empty copy of the table without the views;
    - "sorted": into the bare copy from the table itself, whose parts are already in the
      table's order, so even the insert's sort is nearly free."""
    client.command(f"CREATE TABLE {db}.arrived AS {db}.events ENGINE = Memory")
    client.command(f"INSERT INTO {db}.arrived SELECT * FROM {db}.events ORDER BY received_at, event_id")
    rates = {}
    for name, source in (("sorted", "events"), ("bare copy", "arrived")):
        client.command(f"CREATE TABLE {db}.events_copy AS {db}.events")
        t = time.monotonic()
        client.command(f"INSERT INTO {db}.events_copy SELECT * FROM {db}.{source}")
        rates[name] = stored / (time.monotonic() - t)
        client.command(f"DROP TABLE {db}.events_copy SYNC")
    client.command(f"TRUNCATE TABLE {db}.events")
    t = time.monotonic()
    client.command(f"INSERT INTO {db}.events SELECT * FROM {db}.arrived")
    rates["same table"] = stored / (time.monotonic() - t)
    client.command(f"DROP TABLE {db}.arrived SYNC")
    return rates


class _Key:
    """The writer's context outside Flink: only its current key (the input's role) is read."""

    def __init__(self, role: str):
        self.role = role

    def get_current_key(self) -> str:
        return self.role


def writer_rate(tmp: Path, texts: list[str]) -> list[Figure]:
    """metric_rollup's WarehouseWriter driven directly (no Flink, no Kafka) over bundles of
    MAX_BUNDLE_ROWS resolved events, with the time per row of its two parts."""
    from types import SimpleNamespace

    (tmp / "writer").mkdir()
    cfg = make_config(tmp / "writer", "writer")  # no broker is contacted
    writer = metric_rollup.WarehouseWriter(cfg.clickhouse, cfg.topics)
    writer.open(None)
    db, role, size = cfg.clickhouse.database, _Key("events"), metric_rollup.MAX_BUNDLE_ROWS
    bundles = [SimpleNamespace(values=texts[i:i + size], stamps=[0] * len(texts[i:i + size]))
               for i in range(0, len(texts), size)]
    parse = insert = 0.0
    for bundle in bundles:
        t = time.monotonic()
        with collector_paused():  # as process_element does
            tables, _, _ = writer._rows("events", bundle)  # what process_element does first, timed apart
        t1 = time.monotonic()
        for table, rows in tables.items():
            warehouse.insert_rows(writer.client, db, table, rows)
        insert += time.monotonic() - t1
        parse += t1 - t
    writer.client.command(f"TRUNCATE TABLE {db}.events")
    t = time.monotonic()
    for bundle in bundles:
        list(writer.process_element(bundle, role))
    wall = time.monotonic() - t
    stored = writer.client.query(f"SELECT count() FROM {db}.events").result_rows[0][0]
    copies = copy_rates(writer.client, db, stored)
    writer.close()
    n = len(texts)
    print(f"writer alone: {stored:,} rows in {wall:.2f}s = {stored / wall:,.0f} rows/s; per row: records -> rows "
          f"{parse / n * 1e6:.2f} us, columnar insert {insert / n * 1e6:.2f} us; INSERT ... SELECT in arrival order "
          f"{copies['same table']:,.0f} rows/s into the events table, {copies['bare copy']:,.0f} into a bare copy, "
          f"{copies['sorted']:,.0f} sorted into a bare copy", flush=True)
    return [Figure("freshness", f"writer alone, rows/s (records -> rows {parse / n * 1e6:.2f} us/row, "
                                f"insert {insert / n * 1e6:.2f} us/row)", stored / wall, "rows/s",
                   "INSERT … SELECT into events", copies["same table"]),
            Figure("freshness", "writer alone, rows/s", stored / wall, "rows/s", "INSERT … SELECT, bare copy",
                   copies["bare copy"]),
            Figure("freshness", "writer alone, rows/s", stored / wall, "rows/s", "INSERT … SELECT, sorted, bare copy",
                   copies["sorted"])]


def discarding_job():
    """metric_rollup with a writer that takes each bundle and writes nothing: what reaching
    the writer costs (reading Kafka, bundling, PyFlink's transfer to Python), the job's
    ceiling on this machine."""
    from pyflink.datastream import KeyedProcessFunction

    from tracktor.flink.bundling import bundle_output_type, unbundled

    class Discard(KeyedProcessFunction):
        def process_element(self, bundle, ctx):
            return iter(())

    def build(inputs, cfg):
        return unbundled(metric_rollup.bundles(inputs, cfg).process(Discard(), output_type=bundle_output_type())
                         .set_parallelism(1))

    return runner.Job("bench_discard", inputs=metric_rollup.ROLES, outputs=("dead_letter",), build=build,
                      execution_mode="process")


def rollup_rate(tmp: Path, bootstrap: str, texts: list[str]) -> list[Figure]:
    """metric_rollup as a bounded Flink job over the same resolved events, start-up less;
    and the same job writing nothing over the same topic."""
    walls, configs = {}, {}
    for name, payload in (("warm-up", []), ("empty", []), ("full", texts), ("discard-empty", []), ("discard", [])):
        (tmp / name).mkdir()  # the first run warms the JVM
        cfg = make_config(tmp / name, f"rate-{name}", bootstrap)
        ensure_topics(bootstrap, cfg.kafka, partitions=2)
        if payload:
            loader.send(bootstrap, cfg.topics["events"], [json.loads(t) for t in payload], total=len(payload),
                        label="resolved events sent")
        job = metric_rollup.JOB
        if name.startswith("discard"):
            job = discarding_job()
        if name == "discard":
            cfg = cfg.updated(kafka={"topics": {"events": configs["full"].topics["events"]}})
        configs[name] = cfg
        t = time.monotonic()
        runner.run(job, cfg, bootstrap, bounded=True)
        walls[name] = time.monotonic() - t
    client = warehouse.connect(configs["full"].clickhouse)
    db = configs["full"].clickhouse.database
    stored = client.query(f"SELECT count() FROM {db}.events").result_rows[0][0]
    copies = copy_rates(client, db, stored)
    client.close()
    rate, ceiling = (stored / max(0.1, walls[full] - walls[empty])  # max(): a start-up slower than the run
                     for full, empty in (("full", "empty"), ("discard", "discard-empty")))
    print(f"metric_rollup job: {stored:,} rows in {walls['full']:.1f}s, {walls['empty']:.1f}s of it start-up "
          f"-> {rate:,.0f} rows/s; writing nothing: {walls['discard']:.1f}s -> {ceiling:,.0f} rows/s", flush=True)
    return [Figure("freshness", f"metric_rollup job, bounded ({stored:,} rows)", rate, "rows/s",
                   "INSERT … SELECT into events", copies["same table"]),
            Figure("freshness", f"metric_rollup job, bounded ({stored:,} rows)", rate, "rows/s",
                   "the same job writing nothing", ceiling)]


def freshness(tmp: Path, bootstrap: str, probes: int, load_per_s: int, checkpoint_ms: int) -> list[Figure]:
    name = f"fresh-{load_per_s}-{checkpoint_ms}"
    (tmp / name).mkdir()
    cfg = make_config(tmp / name, name, bootstrap, checkpoint_interval_ms=checkpoint_ms)
    ensure_topics(bootstrap, cfg.kafka, partitions=2)
    jobs = [subprocess.Popen([sys.executable, "-m", "tracktor.cli", "--config", str(cfg.path), "job", job], cwd=ROOT,
                             env=clean_env(), stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}-{job}.log", "w"))
            for job in ("identity_merge", "cart_timeout", "segment_eval", "metric_rollup")]
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    stop = threading.Event()
    derived = DerivedRecords(bootstrap, cfg.topics["derived"], cfg.topics["segments"], stop=stop)

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

    def derived_probe(i: int) -> None:
        """A purchase (cart_timeout's `Cart purchased` on tracktor.derived) and a property
        set that puts a new person in the shipped segment big_spenders (tracktor.segments)."""
        now = int(time.time() * 1000)
        cart = {"totalprice": 80, "products": [{"name": "probe", "price": 80}]}
        for e in (E.cart("demo-shop", f"{CART_PROBE}{i}", "purchase", cart, now, received_at=now),
                  E.set_properties("demo-shop", f"{SEGMENT_PROBE}{i}", {"total_spent": 100}, now, received_at=now)):
            producer.send(cfg.topics["raw"], key=b"demo-shop", value=json.dumps(e).encode()).get(timeout=30)
            derived.acked[e["id"]] = time.monotonic()

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
                derived_probe(i)
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
            if sent_all.is_set() and all(s is not None for s in seen) and derived.complete():
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
    print(f"freshness over {len(lags)} probes under {load_per_s} calls/s offered, checkpoints every {checkpoint_ms} ms: "
          f"p50 {p50:.2f}s  p99 {p99:.2f}s  max {lags[-1]:.2f}s", flush=True)
    where = f"{load_per_s:,} calls/s, checkpoints {checkpoint_ms} ms"
    figures = [Figure("freshness", f"p50, {where}", p50, "s", "checkpoint interval", checkpoint_ms / 1000, True),
               Figure("freshness", f"p99, {where}", p99, "s", "checkpoint interval", checkpoint_ms / 1000, True)]
    for label, prefix in (("cart record", CART_PROBE), ("segment record", SEGMENT_PROBE)):
        lags = derived.lags(prefix)
        if not lags:
            print(f"no call -> {label} was seen", flush=True)
            continue
        p50, p99 = statistics.median(lags), lags[min(len(lags) - 1, int(0.99 * len(lags)))]
        print(f"call -> {label} on Kafka over {len(lags)} calls: p50 {p50:.2f}s  p99 {p99:.2f}s", flush=True)
        figures += [Figure("freshness", f"call -> {label} {q}, {where}", v, "s", "checkpoint interval",
                           checkpoint_ms / 1000, True) for q, v in (("p50", p50), ("p99", p99))]
    return figures


class DerivedRecords:
    """When each probe person's first record became readable (read_committed) on
    tracktor.derived and tracktor.segments; `acked` has when each probe call was acknowledged."""

    def __init__(self, bootstrap: str, *topics: str, stop: threading.Event):
        self.acked: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self.stop = stop
        self.thread = threading.Thread(target=self._read, args=(bootstrap, topics), daemon=True)
        self.thread.start()

    def _read(self, bootstrap: str, topics) -> None:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(*topics, bootstrap_servers=bootstrap, isolation_level="read_committed",
                                 auto_offset_reset="earliest", enable_auto_commit=False)
        try:
            while not self.stop.is_set():
                for batch in consumer.poll(100).values():
                    now = time.monotonic()
                    for msg in batch:
                        if msg.value is None or msg.value.startswith(b"#"):
                            continue  # a tombstone or a clock record
                        try:
                            rec = json.loads(msg.value)
                            who = rec.get("person_id") or ""
                        except (ValueError, AttributeError):
                            continue  # not a record of ours
                        cart = who.startswith(CART_PROBE) and rec.get("event") == "Cart purchased"
                        if cart or who.startswith(SEGMENT_PROBE):  # (not the new person's Visited Site)
                            self.seen.setdefault(who, now)
        finally:
            consumer.close()

    def complete(self) -> bool:
        return all(who in self.seen for who in list(self.acked))

    def lags(self, prefix: str) -> list[float]:
        return sorted(self.seen[w] - t for w, t in list(self.acked.items()) if w.startswith(prefix) and w in self.seen)


def main() -> None:
    ap = arguments(__doc__)
    ap.add_argument("--rows", type=int, default=None, help="resolved events for the write-rate run (200k; quick: 30k)")
    ap.add_argument("--probes", type=int, default=None, help="freshness probes, one every 0.5 s (120; quick: 30)")
    ap.add_argument("--load", type=int, nargs="+", default=None, help="offered calls/s (1000 5000; quick: 300)")
    ap.add_argument("--checkpoint-ms", type=int, nargs="+", default=None, help="checkpoint intervals (1000 5000; quick: 1000)")
    args = ap.parse_args()
    rows = args.rows or (30_000 if args.quick else 200_000)
    probes = args.probes or (20 if args.quick else 120)
    loads = args.load or ([300] if args.quick else [1000, 5000])
    intervals = args.checkpoint_ms or ([1000] if args.quick else [1000, 5000])
    tmp = Path(tempfile.mkdtemp(prefix="bench-freshness-"))
    atexit.register(shutil.rmtree, tmp, True)
    with LocalKafka(tmp / "kafka") as broker:
        envs = Generator(seed=3, people=max(1, rows // 12))
        texts = [json.dumps(r) for r in itertools.islice(resolved(envs), rows)]
        figures = writer_rate(tmp, texts) + rollup_rate(tmp, broker.bootstrap_servers, texts)
        for load in loads:
            for interval in intervals:
                figures += freshness(tmp, broker.bootstrap_servers, probes, load, interval)
    report(figures)


if __name__ == "__main__":
    main()
