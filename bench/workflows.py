"""workflow_runner's throughput per core with 10 campaigns, and trigger -> action latency.

Events as in bench/segment_eval.py (bench/persons.py): P people of one app, 20 event names,
one in five a property change. Ten campaigns, each triggered by one of the names (one by a
property), mixing the blocks: entry limits, property and event-count filters, a delay, a
wait-until, and every kind of action, so most trigger events lead to an action request.

Throughput: a bounded run over the events less the same over an empty topic (start-up),
against the same plumbing with a logic that decides nothing (bench/persons.py's Nothing).

Latency: the job runs unbounded (`bin/tracktor job workflow_runner`) with the ten
campaigns and one more that a Probe event triggers, calling a webhook at once; every 0.2 s
a probe is written to tracktor.events, and heartbeats move tracktor.events and .derived on
every second as identity_merge's and cart_timeout's sinks do (their clock: the time less the
allowed disorder; the job's clock follows those heartbeats alone). Latency = the action request
readable on tracktor.actions (read_committed) - the probe's acknowledgement by Kafka; it
holds the clock's allowed disorder (flink.allowed_disorder: events are taken in time order
once the clock passes them), the heartbeat interval and the checkpoint interval (the
exactly-once commit). Baseline: those three added up, what the design makes it wait.

    bin/tracktor bench --only workflows [--quick]   (or .venv/bin/python bench/workflows.py)
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

WEBHOOK = {"webhook": {"url": "http://127.0.0.1:9/hook", "payload": {"who": "{{person_id}}", "plan": "{{plan}}"}}}
LETTER = {"letter": {"subject": "Hi {{plan | there}}", "body": '<p>Hello <a href="https://x.example/">x</a></p>'}}
CAMPAIGNS = {
    "c0": {"trigger": {"event": "E00"}, "start": "a", "blocks": {"a": LETTER}},
    "c1": {"trigger": {"event": "E01"}, "start": "a", "blocks": {"a": {"entry_limit": 3, "yes": "b", "no": "b"},
                                                                 "b": WEBHOOK}},
    "c2": {"trigger": {"event": "E02"}, "start": "a", "blocks": {
        "a": {"where": {"property": "plan", "op": "eq", "value": "premium"}, "yes": "b", "no": "c"},
        "b": LETTER, "c": {"in_app": {"body": "Upgrade?"}}}},
    "c3": {"trigger": {"event": "E03"}, "start": "a", "blocks": {
        "a": {"where": {"event": "E03", "at_least": 2, "within": "30d"}, "yes": "b", "no": "c"},
        "b": {"set": {"regular": "yes"}}, "c": {"emit": {"event": "First E03"}}}},
    "c4": {"trigger": {"event": "E04"}, "start": "a", "blocks": {"a": {"wait": "10m", "next": "b"}, "b": WEBHOOK}},
    "c5": {"trigger": {"event": "E05"}, "start": "a", "blocks": {
        "a": {"wait_until": {"event": "E06", "at_most": "1h"}, "yes": "b", "no": "c"}, "b": LETTER, "c": WEBHOOK}},
    "c6": {"trigger": {"property": "city"}, "start": "a", "blocks": {"a": {"in_app": {"body": "Welcome to {{city}}"}}}},
    "c7": {"trigger": {"event": "E07"}, "start": "a", "blocks": {"a": {"entry_limit": 10, "yes": "b"}, "b": LETTER}},
    "c8": {"trigger": {"event": "E08"}, "start": "a", "blocks": {
        "a": {"where": {"all": [{"property": "age", "op": "gte", "value": 30}, {"event": "E08"}]}, "yes": "b"},
        "b": WEBHOOK}},
    "c9": {"trigger": {"event": "E09"}, "start": "a", "blocks": {"a": {"emit": {"event": "Nine"}}}},
}
PROBE = {"trigger": {"event": "Probe"}, "start": "a", "blocks": {"a": WEBHOOK}}


def with_campaigns(cfg, campaigns: dict):
    """The config with `campaigns` as the app's (written to its file too, for a job started
    as a process), and no segments (their definitions are segment_eval's)."""
    import yaml

    from tracktor import config
    tree = yaml.safe_load(cfg.path.read_text())
    for app in tree["apps"]:
        app["campaigns"] = campaigns if app["sid"] == APP else {}
    cfg.path.write_text(yaml.safe_dump(tree))
    return config.load(cfg.path)


def latency(tmp: Path, bs: str, probes: int) -> tuple[list[float], float]:
    """Seconds from each probe's acknowledgement by Kafka to its action request, readable;
    and the wait the design adds up to (disorder + heartbeat + checkpoint)."""
    from kafka import KafkaConsumer, KafkaProducer

    from tests.conftest import clean_env, make_config
    from tracktor.dev import loader
    from tracktor.topics import ensure_topics

    (tmp / "latency").mkdir()
    cfg = with_campaigns(make_config(tmp / "latency", "latency", bs, checkpoint_interval_ms=1000),  # the shipped interval
                         {**CAMPAIGNS, "probe": PROBE})
    ensure_topics(bs, cfg.kafka, partitions=2)
    consumer = KafkaConsumer(cfg.topics["actions"], bootstrap_servers=bs, isolation_level="read_committed",
                             auto_offset_reset="earliest", enable_auto_commit=False)
    producer = KafkaProducer(bootstrap_servers=bs, acks="all", linger_ms=0)
    log = tmp / "latency.log"
    job = subprocess.Popen([sys.executable, "-m", "tracktor.cli", "--config", str(cfg.path), "job", "workflow_runner"],
                           env=clean_env(), stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    acked, seen, stop = {}, {}, threading.Event()

    def heartbeats():
        while not stop.wait(cfg.flink.heartbeat_interval_ms / 1000):
            for role in ("events", "derived"):
                loader.send_heartbeat(bs, cfg.topics[role], int((time.time() - cfg.flink.allowed_disorder) * 1000))

    def probe(i: int) -> None:
        now = int(time.time() * 1000)
        person = f"p{i}"
        record = {"event_id": f"probe-{i}", "app": APP, "kind": "track", "event": "Probe", "distinct_id": person,
                  "person_id": person, "ts": now, "received_at": now, "data": {}}
        producer.send(cfg.topics["events"], key=f"{APP}:{person}".encode(), value=json.dumps(record).encode(),
                      timestamp_ms=now).get(30)
        acked[person] = time.monotonic()

    def read_until(done, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline or job.poll() is not None:
                raise RuntimeError(f"workflow_runner did not get there in {timeout_s}s; see {log}")
            for batch in consumer.poll(200).values():
                now = time.monotonic()
                for msg in batch:
                    seen.setdefault(json.loads(msg.value)["person_id"], now)

    beating = threading.Thread(target=heartbeats, daemon=True)
    beating.start()
    try:
        probe(-1)  # the warm-up: the job's start and first checkpoint
        read_until(lambda: "p-1" in seen, 300)
        sender = threading.Thread(target=lambda: [probe(i) or time.sleep(0.2) for i in range(probes)], daemon=True)
        sender.start()
        read_until(lambda: not sender.is_alive() and all(p in seen for p in acked), 300)
    finally:
        stop.set()
        job.terminate()
        job.wait(60)
        consumer.close()
        producer.close()
    designed = cfg.flink.allowed_disorder + (cfg.flink.heartbeat_interval_ms + cfg.flink.checkpoint_interval_ms) / 1000
    return sorted(seen[p] - acked[p] for p in acked if p != "p-1"), designed


def main() -> None:
    ap = arguments(__doc__)
    ap.add_argument("--people", type=int, default=None, help="people (100k; quick: 5k)")
    ap.add_argument("--events", type=int, default=None, help="events (300k; quick: 20k)")
    args = ap.parse_args()
    people = args.people or (5_000 if args.quick else 100_000)
    count = args.events or (20_000 if args.quick else 300_000)

    import jobs
    from tests.conftest import BEGINNING
    from tracktor.dev.kafka_local import LocalKafka
    from udfs.campaigns import parse_campaign
    from udfs.workflows import WorkflowLogic

    job = jobs.load("workflow_runner")
    tmp = Path(tempfile.mkdtemp(prefix="bench-workflows-"))
    figures = []
    try:
        with LocalKafka(tmp / "kafka") as broker:
            bs = broker.bootstrap_servers
            loaded, empty_events = load_events(tmp, bs, list(events(people, count, BEGINNING)))
            warm_up(tmp, bs, job, empty_events)
            base = bounded_rate(tmp, bs, job, Nothing(), "nothing", loaded, empty_events, count, people)
            logic = WorkflowLogic({APP: {k: parse_campaign(k, c) for k, c in CAMPAIGNS.items()}})
            figures.append(Figure("workflows", f"10 campaigns, {people:,} people, trigger events/s per core",
                                  bounded_rate(tmp, bs, job, logic, "campaigns-10", loaded, empty_events, count,
                                               people),
                                  "events/s", "the same plumbing deciding nothing", base))
            lags, designed = latency(tmp, bs, 30 if args.quick else 100)
            p50, p99 = p50_p99(lags)
            print(f"latency: {len(lags)} probes, p50 {p50:.3f}s p99 {p99:.3f}s (the design waits {designed:.1f}s)",
                  flush=True)
            for q, v in (("p50", p50), ("p99", p99)):
                figures.append(Figure("workflows", f"trigger -> action request {q}", v, "s",
                                      "disorder + heartbeat + checkpoint", designed, lower_is_better=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(figures)


if __name__ == "__main__":
    main()
