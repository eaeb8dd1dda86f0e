"""segment_eval's throughput per core with 10 and with 100 segments, and its latency.

Events are made here, already resolved (what identity_merge writes on tracktor.events): P
people in one app, each event one of 20 names with a category in its data, one in five a
property change (plan, age, city, total_spent). The segments mix the kinds the job knows
(property comparisons, events at least N times, with a data filter, in the last 30 days,
AND / OR), 10 of them, then the same ten repeated with other values to 100.

Throughput: a bounded run over the events, its wall time less the same job's over an empty
topic (the start-up), against the same plumbing with a logic that decides nothing (bundled
by person bucket, the person state read and written, the handoff feedback drained): the
ratio is what evaluating segments costs on top of the per-person job's own machinery.

Steady state: the job runs unbounded (`bin/tracktor job segment_eval`) over the events already
in its topic, between a first and a last probe event that each make a person enter a
segment: rate = events / (last probe's record readable − first probe's record readable), so
neither the start-up nor the drain of a bounded run is in it (each end waits for a
checkpoint alike). Baseline: the same job with no segment but the probe's.

Latency: the job runs unbounded (`bin/tracktor job segment_eval`) with 10 segments; every
0.2 s a probe event makes a new person enter one; latency = the segment record readable on
tracktor.segments (read_committed) − the probe's acknowledgement by Kafka; p50 and p99 at
the checkpoint intervals given (the exactly-once commit makes a record readable at the
next checkpoint).

    bin/tracktor bench --only segment_eval [--quick]   (or .venv/bin/python bench/segment_eval.py [--people N])
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, arguments, p50_p99, report  # noqa: E402
from bench.persons import APP, Nothing, bounded_rate, events, load_events, warm_up  # noqa: E402

TEN = [
    {"where": {"property": "plan", "op": "eq", "value": "premium"}},
    {"where": {"property": "age", "op": "gte", "value": 30}},
    {"where": {"any": [{"property": "city", "op": "eq", "value": "London"},
                       {"property": "city", "op": "eq", "value": "New York"}]}},
    {"where": {"event": "E01"}},
    {"where": {"event": "E02", "at_least": 3}},
    {"where": {"event": "E03", "within": "30d"}},
    {"where": {"event": "E04", "where": [{"property": "category", "op": "eq", "value": "tires"}]}},
    {"where": {"all": [{"event": "E05"}, {"property": "plan", "op": "ne", "value": "free"}]}},
    {"where": {"event": "E06", "performed": False}},
    {"where": {"property": "total_spent", "op": "gt", "value": 500}},
]


def segments(n: int) -> dict:
    """n definitions: the ten kinds, then again with other events and values."""
    out = {}
    for i in range(n):
        text = json.dumps(TEN[i % 10])
        if i >= 10:
            k = i // 10
            text = text.replace('"E0', f'"E{k % 2}').replace("premium", f"p{k}").replace("London", f"c{k}")
            text = text.replace("30", str(30 + k)).replace("500", str(500 + 10 * k))
        out[f"s{i:03d}"] = json.loads(text)
    return out


def with_segments(cfg, definitions: dict):
    """The config with `definitions` as the app's segments (written to its file too, for a
    job started as a process)."""
    import yaml

    from tracktor import config
    tree = yaml.safe_load(cfg.path.read_text())
    for app in tree["apps"]:
        app["segments"] = definitions if app["sid"] == APP else {}
    cfg.path.write_text(yaml.safe_dump(tree))
    return config.load(cfg.path)


class Running:
    """segment_eval as `bin/tracktor job segment_eval` with `definitions` and a segment
    "probers" that an event named Probe enters; `seen` has when each prober's record became
    readable on tracktor.segments."""

    def __init__(self, tmp: Path, bs: str, name: str, definitions: dict, checkpoint_ms: int = 1000):
        from kafka import KafkaConsumer

        from tests.conftest import clean_env, make_config
        from tracktor.topics import ensure_topics
        (tmp / name).mkdir()
        self.cfg = with_segments(make_config(tmp / name, name, bs, checkpoint_interval_ms=checkpoint_ms),
                                 {"probers": {"where": {"event": "Probe"}}, **definitions})
        ensure_topics(bs, self.cfg.kafka, partitions=2)
        self.log = tmp / f"{name}.log"
        self.bs, self.seen = bs, {}
        self.consumer = KafkaConsumer(self.cfg.topics["segments"], bootstrap_servers=bs, isolation_level="read_committed",
                                      auto_offset_reset="earliest", enable_auto_commit=False)
        self.clean_env = clean_env

    def start(self) -> "Running":
        self.job = subprocess.Popen([sys.executable, "-m", "tracktor.cli", "--config", str(self.cfg.path), "job",
                                     "segment_eval"], env=self.clean_env(), stdout=subprocess.DEVNULL,
                                    stderr=open(self.log, "w"))
        return self

    def read_until(self, done, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"segment_eval did not get there in {timeout_s}s; see {self.log}")
            for batch in self.consumer.poll(200).values():
                now = time.monotonic()
                for msg in batch:
                    rec = json.loads(msg.value)
                    if rec["segment"] == "probers" and rec["person_id"] not in self.seen:
                        self.seen[rec["person_id"]] = now
            if self.job.poll() is not None:
                raise RuntimeError(f"segment_eval stopped; see {self.log}")

    def stop(self) -> None:
        self.job.terminate()
        self.job.wait(60)
        self.consumer.close()


def probe_event(person: str, ts: int) -> dict:
    return {"event_id": f"probe-{person}", "app": APP, "kind": "track", "event": "Probe", "distinct_id": person,
            "person_id": person, "ts": ts, "received_at": ts, "data": {}}


def steady(tmp: Path, bs: str, name: str, definitions: dict, records: list[dict]) -> float:
    """Events/s of a running segment_eval over `records` (see the module's docstring)."""
    from tracktor.dev import loader
    job = Running(tmp, bs, name, definitions)
    first, last = records[0]["ts"] - 1, records[-1]["ts"] + 1
    loader.send(job.bs, job.cfg.topics["events"], [probe_event("first", first), *records, probe_event("last", last)],
                label=f"{name}: events loaded")
    job.start()
    try:
        job.read_until(lambda: "last" in job.seen)
    finally:
        job.stop()
    return len(records) / max(0.001, job.seen["last"] - job.seen["first"])


def latency(tmp: Path, bs: str, probes: int, checkpoint_ms: int) -> list[float]:
    """Seconds from each probe's acknowledgement by Kafka to its segment record, readable."""
    from kafka import KafkaProducer

    job = Running(tmp, bs, f"latency-{checkpoint_ms}", segments(9), checkpoint_ms).start()
    producer = KafkaProducer(bootstrap_servers=bs, acks="all", linger_ms=0)
    acked = {}

    def probe(i: int) -> None:
        now = int(time.time() * 1000)
        producer.send(job.cfg.topics["events"], key=APP.encode(), value=json.dumps(probe_event(f"p{i}", now)).encode(),
                      timestamp_ms=now).get(30)
        acked[f"p{i}"] = time.monotonic()

    try:
        probe(-1)  # the warm-up: the job's start and first checkpoint
        job.read_until(lambda: "p-1" in job.seen, timeout_s=300)
        sender = threading.Thread(target=lambda: [probe(i) or time.sleep(0.2) for i in range(probes)], daemon=True)
        sender.start()
        job.read_until(lambda: not sender.is_alive() and all(p in job.seen for p in acked), timeout_s=300)
    finally:
        job.stop()
        producer.close()
    return sorted(job.seen[p] - acked[p] for p in acked if p != "p-1")


def main() -> None:
    ap = arguments(__doc__)
    ap.add_argument("--people", type=int, default=None, help="people (100k; quick: 5k)")
    ap.add_argument("--events", type=int, default=None, help="events (300k; quick: 20k)")
    ap.add_argument("--latency-off", action="store_true", help="throughput only")
    ap.add_argument("--buckets", type=int, default=None, help="flink.person_buckets (default: the shipped value)")
    args = ap.parse_args()
    people = args.people or (5_000 if args.quick else 100_000)
    count = args.events or (20_000 if args.quick else 300_000)
    sizes = (10,) if args.quick else (10, 100)
    intervals = (1000,) if args.quick else (1000, 5000)
    if args.latency_off:
        intervals = ()

    from tests.conftest import BEGINNING
    from tracktor.dev.kafka_local import LocalKafka
    from udfs.segment_rules import parse_segment
    from udfs.segments import SegmentLogic
    import jobs

    seg_job = jobs.load("segment_eval")
    tmp = Path(tempfile.mkdtemp(prefix="bench-segments-"))
    figures = []
    try:
        with LocalKafka(tmp / "kafka") as broker:
            bs = broker.bootstrap_servers
            records = list(events(people, count, BEGINNING))
            loaded, empty_events = load_events(tmp, bs, records)

            def rate(label: str, logic) -> float:
                return bounded_rate(tmp, bs, seg_job, logic, label, loaded, empty_events, count, people,
                                    args.buckets)

            warm_up(tmp, bs, seg_job, empty_events)
            base = rate("nothing", Nothing())
            for n in sizes:
                logic = SegmentLogic({APP: {k: parse_segment(k, d) for k, d in segments(n).items()}})
                figures.append(Figure("segment_eval", f"{n} segments, {people:,} people, events/s per core",
                                      rate(f"segments-{n}", logic), "events/s",
                                      "the same plumbing deciding nothing", base))
            if not args.quick:  # at quick sizes the checkpoints' steps would be most of it
                plain = steady(tmp, bs, "steady-none", {}, records)
                for n in sizes:
                    figures.append(Figure("segment_eval", f"{n} segments, running, {people:,} people, events/s per core",
                                          steady(tmp, bs, f"steady-{n}", segments(n), records), "events/s",
                                          "the same job with only the probe's segment", plain))
            for interval in intervals:
                lags = latency(tmp, bs, 30 if args.quick else 100, interval)
                if not lags:
                    raise RuntimeError("no probe reached tracktor.segments")
                p50, p99 = p50_p99(lags)
                print(f"latency, checkpoints every {interval} ms: {len(lags)} probes, p50 {p50:.3f}s p99 {p99:.3f}s",
                      flush=True)
                for q, v in (("p50", p50), ("p99", p99)):
                    figures.append(Figure("segment_eval", f"event -> segment record {q}, checkpoints {interval} ms",
                                          v, "s", "checkpoint interval", interval / 1000, lower_is_better=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(figures)


if __name__ == "__main__":
    main()
