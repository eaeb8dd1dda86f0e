"""What the per-person jobs' benchmarks share (bench/segment_eval.py, bench/workflows.py):
resolved events as identity_merge writes them, a logic that decides nothing (the baseline),
and a job's rate over them in a bounded run less its start-up."""
from __future__ import annotations

import random
import time
from pathlib import Path

APP = "demo-video"
NAMES = [f"E{i:02d}" for i in range(20)]


def events(people: int, count: int, start_ms: int):
    rnd = random.Random(7)
    for i in range(count):
        person = f"u{rnd.randrange(people)}"
        t = start_ms + i * 50
        if i % 5 == 0:
            data = {rnd.choice(["plan", "age", "city", "total_spent"]):
                    rnd.choice(["premium", "free", 25, 41, "London", "Paris", 120, 900])}
            kind, name = "set", "$set"
        else:
            kind, name, data = "track", rnd.choice(NAMES), {"category": rnd.choice(["tires", "oil", "seats"])}
        yield {"event_id": f"e{i}", "app": APP, "kind": kind, "event": name, "distinct_id": person,
               "person_id": person, "ts": t, "received_at": t, "data": data}


class Nothing:
    """A Logic that decides nothing: the per-person job's plumbing alone (the baseline)."""

    def new(self, app, person):
        return {}

    def apply(self, s, event, ts, out):
        s["n"] = s.get("n", 0) + 1

    def fire(self, s, now, out):
        pass

    def due(self, s):
        return None

    def combine(self, s, other, at, out):
        pass

    def leave(self, s, at, reason, out):
        pass

    def empty(self, s):
        return False

    def revisit(self, s, now, out, cause):
        pass

    def change_of(self, record):
        return f"{record.get('app')}:{record.get('name')}", record.get("app")

    def adopt(self, key, definition):
        pass



def config(tmp: Path, bs: str, name: str, events_topic: str | None = None, buckets: int | None = None):
    """A config of its own (topics prefixed `name`), reading `events_topic` when given."""
    from tests.conftest import make_config
    from tracktor.topics import ensure_topics
    (tmp / name).mkdir()
    cfg = make_config(tmp / name, name, bs, **({"person_buckets": buckets} if buckets else {}))
    if events_topic:
        cfg = cfg.updated(kafka={"topics": {"events": events_topic}})
    ensure_topics(bs, cfg.kafka, partitions=2)
    return cfg


def load_events(tmp: Path, bs: str, records: list[dict]):
    """The records (in time order) on an events topic with a heartbeat after every 1,000 of
    them, as identity_merge writes its clock along (the jobs' clock follows heartbeats alone),
    and the clock an hour past them at the end; and an empty events topic."""
    from tracktor.dev import loader
    loaded = config(tmp, bs, "events")
    for i in range(0, len(records), 1000):
        chunk = records[i:i + 1000]
        loader.send(bs, loaded.topics["events"], chunk, label="events loaded")
        loader.send_heartbeat(bs, loaded.topics["events"], chunk[-1]["ts"] - 1)
    loader.send_heartbeat(bs, loaded.topics["events"], records[-1]["ts"] + 3_600_000)
    return loaded, config(tmp, bs, "empty").topics["events"]


def person_job(job, logic):
    """`job`'s graph (jobs/NAME.py) with another logic."""
    from tracktor.flink import runner
    from tracktor.flink.persons import build_person_job
    return runner.Job(job.name, job.inputs, job.outputs, lambda inputs, cfg: build_person_job(job, logic, inputs, cfg),
                      clock_inputs=job.clock_inputs)


def warm_up(tmp: Path, bs: str, job, empty_events: str) -> None:
    """A bounded run over nothing, so the JVM's JIT has run before anything is timed."""
    from tracktor.flink import runner
    runner.run(person_job(job, Nothing()), config(tmp, bs, "warm-up", empty_events), bs, bounded=True)


def bounded_rate(tmp: Path, bs: str, job, logic, label: str, loaded, empty_events: str, count: int, people: int,
                 buckets: int | None = None, prepare=None) -> float:
    """Events/s of `job`'s graph with `logic`: a bounded run over the loaded events, less the
    same over the empty topic (the start-up). `prepare(cfg)` may change each config."""
    from tracktor.flink import runner
    timed = person_job(job, logic)
    prepare = prepare or (lambda cfg: cfg)
    t = time.monotonic()
    runner.run(timed, prepare(config(tmp, bs, f"{label}-empty", empty_events, buckets)), bs, bounded=True)
    start = time.monotonic() - t
    t = time.monotonic()
    runner.run(timed, prepare(config(tmp, bs, label, loaded.topics["events"], buckets)), bs, bounded=True)
    wall = time.monotonic() - t
    r = count / max(0.1, wall - start)
    print(f"{label}: {count:,} events of {people:,} people in {wall:.1f}s ({start:.1f}s start-up): {r:,.0f} events/s",
          flush=True)
    return r
