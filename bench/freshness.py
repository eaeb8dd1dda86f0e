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
2. Freshness: every job of the pipeline (jobs.NAMES) runs unbounded (as `bin/tracktor job
   NAME`, the shipped settings but for the topics and paths; a run with its own checkpoint
   interval gives it to every job, identity_merge included)
   behind the HTTP collector, under a steady offered load of generated calls posted to it
   as /batch calls of 100; every half second a probe is sent as GET /track, and a reader
   polls the events table for new probes (a primary-key range, every 100 ms) and, once one
   is stored, runs a times_event_happened metric through the warehouse's owner (the
   rollup) until it counts it. Freshness = counted − the collector's 200; p50, p99, beside the
   checkpoint intervals of the committed hops on the way (a job's output is readable once its
   checkpoint commits): identity_merge's for the metric, and its plus the deriving job's. With
   each probe go a purchase and a property set by new people of the shop demo (/batch):
   the time from their 200 to cart_timeout's `Cart purchased` on tracktor.derived and
   segment_eval's big_spenders entry on tracktor.segments (read_committed) is the
   latency from a call to its derived records. Over the probes, the CPU every process
   used (each job's process tree, the broker, this process: the collector, the load, the
   probes and their readers) gives the cores the pipeline used at that load, beside the
   machine's cores. The load starts once the pipeline is up and runs SETTLE_S before the
   probes; a probe not seen WAIT_S after the last makes the figures floors.

    bin/tracktor bench --only freshness [--quick]   (or .venv/bin/python bench/freshness.py [--rows N])
"""
from __future__ import annotations

import atexit
import collections
import http.client
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Figure, arguments, p50_p99, report  # noqa: E402
import jobs as job_names  # noqa: E402
from jobs import metric_rollup  # noqa: E402
from tests.conftest import clean_env, make_config  # noqa: E402
from tracktor.analytics import queries as analytics  # noqa: E402
from tracktor.dev import envelopes as E, loader  # noqa: E402
from tracktor.topics import ensure_topics  # noqa: E402
from tracktor import warehouse  # noqa: E402
from tracktor import config  # noqa: E402
from tracktor.config import metric_from  # noqa: E402
from tracktor.flink import runner  # noqa: E402
from tracktor.flink.bundling import collector_paused  # noqa: E402
from tracktor.collector.processes import CollectorProcesses  # noqa: E402
from tracktor.dev.kafka_local import LocalKafka  # noqa: E402
from tracktor.dev.sample_data import Generator  # noqa: E402
from tracktor.warehouse.shared import owner_file  # noqa: E402
from udfs.envelope import CART_METHODS  # noqa: E402

PROBE = "Freshness probe"
LOAD_BATCH = 100  # calls per /batch of the offered load
# (offered calls/s, checkpoint interval ms for every job; None: the shipped intervals) of the freshness runs
FULL_RUNS = [(1000, None), (2500, None), (5000, None), (1000, 1000), (1000, 5000), (5000, 5000)]
QUICK_RUNS = [(100, None)]
SETTLE_S = 20  # the offered load runs this long before the probes start
WAIT_S = 120  # how long after the last probe the run waits for the probes to be counted
POLL_S = 0.1  # how often the reader looks for new probes in the warehouse
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


def writer_rate(tmp: Path, texts: list[str]) -> list[Figure]:
    """metric_rollup's WarehouseWriter driven directly (no Flink, no Kafka) over bundles of
    MAX_BUNDLE_ROWS resolved events, with the time per row of its two parts."""
    from types import SimpleNamespace

    (tmp / "writer").mkdir()
    cfg = make_config(tmp / "writer", "writer")  # no broker is contacted
    writer = metric_rollup.WarehouseWriter(cfg.clickhouse, cfg.topics)
    writer.open(None)
    db, size = cfg.clickhouse.database, metric_rollup.MAX_BUNDLE_ROWS
    bundles = [SimpleNamespace(values=part, stamps=[0] * len(part), roles=["events"] * len(part))
               for part in (texts[i:i + size] for i in range(0, len(texts), size))]
    parse = insert = 0.0
    for bundle in bundles:
        t = time.monotonic()
        with collector_paused():  # as process_element does
            tables, _, _ = writer._rows(bundle)  # what process_element does first, timed apart
        t1 = time.monotonic()
        for table, rows in tables.items():
            warehouse.insert_rows(writer.client, db, table, rows)
        insert += time.monotonic() - t1
        parse += t1 - t
    writer.client.command(f"TRUNCATE TABLE {db}.events")
    t = time.monotonic()
    for bundle in bundles:
        list(writer.process_element(bundle, None))
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


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far, user + system, its reaped children's
    included) of every running process."""
    tick, table = os.sysconf("SC_CLK_TCK"), {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()  # after the command's name
            except OSError:
                continue  # it has just exited
            table[int(d.name)] = (int(fields[1]), sum(map(int, fields[11:15])) / tick)  # its own and its reaped children's
    return table


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process with its descendants, a descendant that
    is itself named counted under its own name only."""
    table, children = _processes(), collections.defaultdict(list)
    for pid, (parent, _) in table.items():
        children[parent].append(pid)
    named, used = set(roots.values()), {}
    for name, root in roots.items():
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            total += table.get(pid, (0, 0.0))[1]
            todo += [c for c in children[pid] if c not in named]
        used[name] = total
    return used


class Calls:
    """Calls to the collector over one keep-alive connection, each answered 200 (else raised)."""

    def __init__(self, address: str):
        url = urllib.parse.urlsplit(address)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)

    def _call(self, method: str, path: str, body: bytes | None = None) -> float:
        headers = {"Content-Type": "application/json"} if body else {}
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # the collector closes a connection idle for collector.idle_timeout: open another, as a browser does
            self.conn.close()
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
        text = response.read()
        if response.status != 200:
            raise RuntimeError(f"the collector answered {method} {path[:60]} with {response.status}: {text[:300]!r}")
        return time.monotonic()

    def batch(self, envelopes: list[dict]) -> float:
        """POST /batch; when it was answered."""
        return self._call("POST", "/batch", json.dumps([E.to_call(e) for e in envelopes]).encode())

    def track(self, app: str, distinct_id: str, action: str, ts: int) -> float:
        """GET /track, as a browser's tio.js calls it; when it was answered."""
        return self._call("GET", "/track?" + urllib.parse.urlencode({"sid": app, "id": distinct_id, "action": action,
                                                                        "ts": ts}))

    def close(self) -> None:
        self.conn.close()


def freshness(tmp: Path, broker: LocalKafka, probes: int, load_per_s: int, checkpoint_ms: int | None) -> list[Figure]:
    name = base = f"fresh-{load_per_s}-{checkpoint_ms or 'shipped'}"
    for n in itertools.count(2):  # a setting given twice (--load 1000 1000) is run twice
        if not (tmp / name).exists():
            break
        name = f"{base}-{n}"
    (tmp / name).mkdir()
    bootstrap = broker.bootstrap_servers
    shipped = config.load().flink
    intervals = {"checkpoint_interval_ms": checkpoint_ms, "jobs": {}} if checkpoint_ms else {
        "checkpoint_interval_ms": shipped.checkpoint_interval_ms,
        "jobs": {job: own.model_dump(exclude_none=True) for job, own in shipped.jobs.items()}}
    cfg = make_config(tmp / name, name, bootstrap, **intervals)
    checkpoints = f"checkpoints {cfg.flink.checkpoint_interval_ms} ms" + "".join(
        f", {job} {job_names.load(job).flink_settings(cfg).checkpoint_interval_ms} ms" for job in cfg.flink.jobs)
    ensure_topics(bootstrap, cfg.kafka, partitions=2)
    jobs = {job: subprocess.Popen([sys.executable, "-m", "tracktor.cli", "--config", str(cfg.path), "job", job],
                                  cwd=ROOT, env=clean_env(), stdout=subprocess.DEVNULL,
                                  stderr=open(tmp / f"{name}-{job}.log", "w"))
            for job in job_names.NAMES}
    stop, offered, failures, collector = threading.Event(), [0], [], None

    def alive() -> None:
        """Raise if a job has exited or a call failed."""
        gone = [job for job, p in jobs.items() if p.poll() is not None]
        if gone or failures:
            raise RuntimeError(f"{failures[0] if failures else 'job(s) ' + ', '.join(gone) + ' exited'}; "
                               f"see {tmp}/{name}-*.log")

    def background():
        """load_per_s generated calls a second, as /batch calls of LOAD_BATCH each tenth of a
        second, stamped with the time they are sent (one connection, each call waiting for
        its 200: the rate sent is measured, and falls short when the collector is slower)."""
        gen, calls = iter(Generator(seed=9, people=1_000_000)), Calls(collector.address)
        try:
            while not stop.is_set():
                t, now, due = time.monotonic(), int(time.time() * 1000), max(1, load_per_s // 10)
                while due > 0:
                    n = min(LOAD_BATCH, due)
                    calls.batch([{**next(gen), "ts": now} for _ in range(n)])
                    offered[0] += n
                    due -= n
                stop.wait(max(0.0, 0.1 - (time.monotonic() - t)))
        except Exception as e:  # noqa: BLE001 - reported by the run, which then fails
            if not stop.is_set():  # (not the collector stopping at the end)
                failures.append(e)
        finally:
            calls.close()

    try:
        collector = CollectorProcesses(cfg, bootstrap, workers=1, port=0).start()
        derived = DerivedRecords(bootstrap, cfg.topics["derived"], cfg.topics["segments"], stop=stop)
        # the pipeline starts idle: the writer opens the warehouse with the warm-up probe, the
        # first record; it is counted once every job has started and checkpointed
        probe_calls = Calls(collector.address)
        t0 = probe_calls.track("demo-video", "probe-warm-up", PROBE, int(time.time() * 1000))
        path = Path(cfg.clickhouse.dsn[len("chdb://"):])
        while not owner_file(path).exists():
            alive()
            if time.monotonic() - t0 > 300:
                raise RuntimeError(f"the warehouse was not opened in 300 s; see {tmp}/{name}-*.log")
            time.sleep(0.2)
        client = warehouse.connect(cfg.clickhouse)
        db = cfg.clickhouse.database
        warehouse.migrate(client, db)  # the writer may still be migrating: idempotent, through the owner
        metric = metric_from("probes", {"type": "times_event_happened", "event": PROBE})

        def counted() -> int:
            """The probes the metric counts, by the people who sent them (a probe sent twice,
            retried after a dropped connection, is one person; since yesterday: a run may
            cross midnight UTC)."""
            today = datetime.now(timezone.utc).date()
            return int(analytics.metric(client, db, "demo-video", metric, today - timedelta(days=1), today).people)

        def probes_stored() -> set[str]:
            """Which probes are stored (they need not arrive in the order they were sent): one
            query over a range of the table's primary key, where the metric runs two."""
            return {r[0] for r in client.query(f"SELECT DISTINCT distinct_id FROM {db}.events WHERE app = "
                                               f"'demo-video' AND event = '{PROBE}'").result_rows}

        while counted() < 1:
            alive()
            if time.monotonic() - t0 > 300:
                raise RuntimeError("the warm-up probe was not counted in 300 s")
            time.sleep(0.2)
        print(f"pipeline running; first probe counted after {time.monotonic() - t0:.1f}s (start-up included)", flush=True)
        # then the offered load, steady for SETTLE_S before the probes
        threading.Thread(target=background, daemon=True).start()
        stop.wait(SETTLE_S)

        acked, seen = {}, {}  # probe id -> when the collector answered / when the metric counted it
        sent_all = threading.Event()

        def send_probes():
            """A GET /track probe, then a /batch of a purchase and a property set by two new
            shop people (their derived records' probes), then half a second's pause."""
            cart = {"totalprice": 80, "products": [{"name": "probe", "price": 80}]}
            try:
                for i in range(probes):
                    if stop.is_set():
                        break
                    now = int(time.time() * 1000)
                    acked[f"probe-{i}"] = probe_calls.track("demo-video", f"probe-{i}", PROBE, now)
                    people = (f"{CART_PROBE}{i}", f"{SEGMENT_PROBE}{i}")
                    answered = probe_calls.batch([E.cart("demo-shop", people[0], "purchase", cart, now),
                                                  E.set_properties("demo-shop", people[1], {"total_spent": 100}, now)])
                    for who in people:
                        derived.acked[who] = answered
                    stop.wait(0.5)
            except Exception as e:  # noqa: BLE001 - reported by the run, which then fails
                if not stop.is_set():
                    failures.append(e)
            sent_all.set()

        roots = {**{job: p.pid for job, p in jobs.items()}, "broker": broker.process.pid, "this process": os.getpid()}
        cpu_before, started, offered_before = cpu_seconds(roots), time.monotonic(), offered[0]
        sender = threading.Thread(target=send_probes, daemon=True)
        sender.start()
        last = started + probes * 0.6 + WAIT_S
        while time.monotonic() < last:
            alive()
            # The metric runs when new probes are stored, until it counts them: polled every
            # 50 ms itself it took ~0.4 of a core (two queries of ~35 ms at 70k events), and
            # the stored probes every 50 ms through the owner ~0.2 (a query ~18 ms while the
            # writer inserts): loads no dashboard puts on the warehouse, and the pipeline's
            # cores are what is measured. Polled every POLL_S, a lag reads up to that late.
            stored = probes_stored()
            if stored - seen.keys() and counted() >= len(stored):
                now = time.monotonic()
                for who in stored - seen.keys():
                    seen[who] = now
            if sent_all.is_set() and len(seen) > len(acked) and derived.complete():  # (seen has the warm-up's)
                break
            time.sleep(POLL_S)
        ended = time.monotonic()
        cpu = {k: v - cpu_before[k] for k, v in cpu_seconds(roots).items()}
        window = ended - started
        sent_rate = (offered[0] - offered_before) / window
        stop.set()
        sender.join(30)
        client.close()
        probe_calls.close()
    finally:
        stop.set()
        if collector is not None:
            collector.stop()
        for p in jobs.values():
            p.terminate()
        for p in jobs.values():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    lags = sorted(seen.get(who, ended) - t for who, t in acked.items())  # never counted: at least until the end
    missing = sum(who not in seen for who in acked) + sum(who not in derived.seen for who in derived.acked)
    if missing:
        print(f"{missing} probes were not seen within {WAIT_S}s of the last: the pipeline fell behind the offered "
              f"load, and the figures below are floors (their lags counted until the end)", flush=True)
    p50, p99 = p50_p99(lags)
    print(f"freshness over {len(lags)} probes under {load_per_s} calls/s offered ({sent_rate:,.0f} sent), "
          f"{checkpoints}: p50 {p50:.2f}s  p99 {p99:.2f}s  max {lags[-1]:.2f}s", flush=True)
    cores = sum(cpu.values()) / window
    print(f"cores used over {window:.0f}s: {cores:.2f} of {os.cpu_count()}: "
          + ", ".join(f"{k} {v / window:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
          + " (this process: the collector, the load, the probes and their readers; the metric's polling is the "
            "rollup's)", flush=True)
    where = (f"{load_per_s:,} calls/s{' (floor)' if missing else ''} ({sent_rate:,.0f} sent), "
             f"{checkpoints}")
    # Baseline: the checkpoint intervals of the committed hops on the way (each waits for one)
    hop = {job: job_names.load(job).flink_settings(cfg).checkpoint_interval_ms / 1000 for job in job_names.NAMES}
    figures = [Figure("freshness", f"call -> metric {q}, {where}", v, "s", "identity_merge's checkpoint interval",
                      hop["identity_merge"], True) for q, v in (("p50", p50), ("p99", p99))]
    for label, prefix, job in (("cart record", CART_PROBE, "cart_timeout"), ("segment record", SEGMENT_PROBE, "segment_eval")):
        lags = derived.lags(prefix, ended)
        p50, p99 = p50_p99(lags)
        print(f"call -> {label} on Kafka over {len(lags)} calls: p50 {p50:.2f}s  p99 {p99:.2f}s", flush=True)
        figures += [Figure("freshness", f"call -> {label} {q}, {where}", v, "s",
                           f"checkpoint intervals of identity_merge + {job}", hop["identity_merge"] + hop[job], True)
                    for q, v in (("p50", p50), ("p99", p99))]
    figures.append(Figure("freshness", f"cores used, every process, {where}", cores, "cores", "the machine's cores",
                          os.cpu_count(), True))
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

    def lags(self, prefix: str, ended: float) -> list[float]:
        """The probes' lags, one never seen counted as lasting until `ended` (a floor)."""
        return sorted(self.seen.get(w, ended) - t for w, t in list(self.acked.items()) if w.startswith(prefix))


def main() -> None:
    ap = arguments(__doc__)
    ap.add_argument("--rows", type=int, default=None, help="resolved events for the write-rate run (200k; quick: 30k)")
    ap.add_argument("--probes", type=int, default=None, help="freshness probes, one every 0.5 s (120; quick: 20)")
    ap.add_argument("--load", type=int, nargs="+", default=None,
                    help="offered calls/s, each run at every --checkpoint-ms (default: FULL_RUNS; quick: QUICK_RUNS)")
    ap.add_argument("--checkpoint-ms", type=int, nargs="+", default=None,
                    help="checkpoint intervals, each for every job (default: the shipped ones)")
    args = ap.parse_args()
    rows = args.rows or (30_000 if args.quick else 200_000)
    probes = args.probes or (20 if args.quick else 120)
    if args.load or args.checkpoint_ms:  # every offered load at every interval
        runs = list(itertools.product(args.load or [1000], args.checkpoint_ms or [None]))
    else:
        runs = QUICK_RUNS if args.quick else FULL_RUNS
    tmp = Path(tempfile.mkdtemp(prefix="bench-freshness-"))
    atexit.register(shutil.rmtree, tmp, True)
    with LocalKafka(tmp / "kafka") as broker:
        envs = Generator(seed=3, people=max(1, rows // 12))
        texts = [json.dumps(r) for r in itertools.islice(resolved(envs), rows)]
        figures = writer_rate(tmp, texts) + rollup_rate(tmp, broker.bootstrap_servers, texts)
        for load, interval in runs:
            figures += freshness(tmp, broker, probes, load, interval)
    report(figures)


if __name__ == "__main__":
    main()
