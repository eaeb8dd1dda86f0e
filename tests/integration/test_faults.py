"""Exactly once under real faults: the four jobs run as processes of their own (as
`bin/tracktor job NAME` runs them) while generated calls arrive, and are hurt on purpose:

- SIGKILL of a random job at random moments, several times per run, each restarted at once
  from its last checkpoint (CI runs seed 1; TRACKTOR_FAULT_SEEDS=1,2,3,4 runs more);
- each job in turn stopped with a savepoint (SIGTERM) and started again from it, and the
  embedded warehouse unavailable for a while in the same run: another process owns its path
  and is frozen (SIGSTOP) mid-stream, then let go on (SIGCONT).

After each run has caught up, its outputs are compared with those of an uninterrupted run of
the same input (each job once, bounded, one after the other): identity_merge's topics record
by record per key in order; segment changes and dead letters as multisets (no record lost,
none doubled); cart_timeout's derived records likewise; every warehouse table row by row, and
metric and funnel answers.
"""
from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from datetime import date

import orjson
import pytest

import jobs
from tests.conftest import BEGINNING, OtherOwner, make_config, read_topic, run_jobs, start_job, stop_job
from tracktor import warehouse
from tracktor.analytics import queries as analytics
from tracktor.config import Funnel, metric_from
from tracktor.dev import loader
from tracktor.dev.sample_data import Generator
from tracktor.flink import status
from tracktor.flink.status import running_file
from tracktor.topics import ensure_topics, lag
from tracktor.warehouse.migrate import migration_files

pytestmark = [pytest.mark.integration, pytest.mark.faults]  # jobs SIGKILLed and restarted: the second tier

ORDERED = ("events", "identities", "profiles")          # identity_merge's: per key in order
UNORDERED = ("derived", "segments", "dead_letter")     # the per-person jobs' outputs: as multisets
# A segment change's time and cause are left out: segment_eval reads tracktor.derived beside
# tracktor.events, and a derived event of a person that races the person's merge notice from
# the other topic can move a merge's change to that event's time (docs/segments.md, known
# limits). That interleaving varies between any two runs, faults or not.
TIMING = {"segments": ("ts", "cause")}
FEED_S = 24                                             # the calls arrive over this long
SEEDS = [int(s) for s in os.environ.get("TRACKTOR_FAULT_SEEDS", "1").split(",")]
DAYS = (date(2026, 1, 1), date(2026, 1, 3))


def calls() -> list[dict]:
    envs = Generator(seed=21, people=150, apps={"demo-video": "video", "demo-shop": "shop"}, start_ms=BEGINNING, days=2)
    return sorted(envs, key=lambda e: e["received_at"])


def config(tmp_path_factory, kafka, name: str):
    cfg = make_config(tmp_path_factory.mktemp(name), name, kafka, checkpoint_interval_ms=1000)
    ensure_topics(kafka, cfg.kafka)
    return cfg


def feed(kafka, cfg, envs: list[dict], seconds: float = 0.0) -> None:
    """The calls into tracktor.raw, spread over `seconds`, then a heartbeat an hour past the
    last (so every cart timer due by then fires, in the live runs and the reference alike)."""
    chunks = 12 if seconds else 1
    step = -(-len(envs) // chunks)
    for i in range(0, len(envs), step):
        loader.send(kafka, cfg.topics["raw"], envs[i:i + step], label="calls")
        time.sleep(seconds / chunks)
    loader.send_heartbeat(kafka, cfg.topics["raw"], envs[-1]["received_at"] + 3_600_000)


def contents(kafka, cfg) -> dict:
    """What a run leaves: the output topics (a dead letter's failed_at is wall-clock time, left
    out) and the warehouse's tables and answers."""
    out = {}
    for role in ORDERED + UNORDERED:
        left_out = ("failed_at",) + TIMING.get(role, ())
        records = [(k, {f: v for f, v in value.items() if f not in left_out} if value is not None else None)
                   for k, value in read_topic(kafka, cfg.topics[role])]
        if role in ORDERED:
            seqs = defaultdict(list)
            for k, v in records:
                seqs[k].append(v)
            out[role] = dict(seqs)
        else:
            out[role] = Counter(orjson.dumps((k, v), option=orjson.OPT_SORT_KEYS) for k, v in records)
    client = warehouse.connect(cfg.clickhouse)
    db = cfg.clickhouse.database
    try:
        for name, table, columns, where in (
                ("events", "events", "*", "kind != 'derived'"), ("derived events", "events", "*", "kind = 'derived'"),
                ("property_sets", "property_sets", "*", "1"), ("identities", "identities", "*", "1"),
                ("persons", "persons", "*", "1"), ("segment_changes", "segment_changes", "* EXCEPT ts", "1")):
            out[f"table {name}"] = client.query(f"SELECT {columns} FROM {db}.{table} FINAL WHERE {where} "
                                                "ORDER BY ALL").result_rows
        for name, definition in {"visits": {"type": "times_event_happened", "event": "Site visit"},
                                 "people": {"type": "people_did_event", "event": "Registration"}}.items():
            out[f"metric {name}"] = analytics.metric(client, db, "demo-video", metric_from(name, definition), *DAYS).total
        steps = ("Site visit", "Free movie view", "Registration", "Upgrade to Premium")
        out["funnel"] = [s.people for s in analytics.funnel(client, db, "demo-video", Funnel.of("f", steps, None), *DAYS)]
    finally:
        client.close()
    return out


@pytest.fixture(scope="module")
def uninterrupted(kafka, tmp_path_factory):
    envs = calls()
    cfg = config(tmp_path_factory, kafka, "faults-ref")
    feed(kafka, cfg, envs)
    run_jobs(cfg, kafka)
    return envs, contents(kafka, cfg)


class Pipeline:
    """The jobs (all four, or `names`) as processes of their own, restarted at will."""

    def __init__(self, cfg, names=jobs.NAMES):
        self.cfg = cfg
        self.procs = {name: start_job(cfg, name) for name in names}
        self.faults: list[str] = []

    def kill(self, name: str) -> None:
        stop_job(self.procs[name])
        self.faults.append(f"SIGKILL {name}")
        self.procs[name] = start_job(self.cfg, name)

    def savepoint(self, name: str) -> None:
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGTERM)  # the Python process only: it stops its job with a savepoint
        assert proc.wait(240) == 0, proc.log.read_text(errors="replace")[-3000:]
        assert b"savepoint: " in proc.log.read_bytes()
        self.faults.append(f"savepoint {name}")
        self.procs[name] = start_job(self.cfg, name)

    def settle(self, kafka, timeout_s: float = 300) -> None:
        """Return once every job runs (registered by its runner), is behind its inputs by no
        more than the clock's last few heartbeats, and no output topic has gained a record
        (heartbeats aside) over four checks 4 s apart: longer than a job's restart."""
        groups, outputs = [], set()  # (topic, group): several jobs read tracktor.events
        for name in self.procs:
            job = jobs.load(name)
            groups += [(self.cfg.topics[role], job.group_id(role)) for role in job.inputs]
            outputs.update(self.cfg.topics[role] for role in job.outputs)
        deadline, settled, last = time.monotonic() + timeout_s, 0, None
        while settled < 4:
            assert time.monotonic() < deadline, f"the jobs did not catch up; faults: {self.faults}"
            time.sleep(4)
            running = True
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"{name} died:\n{proc.log.read_text(errors='replace')[-3000:]}"
                info = running_file(self.cfg.flink, name)
                running = running and info.exists() and json.loads(info.read_text())["pid"] == proc.pid
            behind = [lag(kafka, {topic: group})[topic] for topic, group in groups]
            counts = {topic: len(read_topic(kafka, topic)) for topic in sorted(outputs)}
            close = all(b is not None and b <= 10 for b in behind)
            settled = settled + 1 if running and close and counts == last else 0
            last = counts

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_job(proc)


def assert_same(got: dict, expected: dict, faults: list[str], which) -> None:
    """The outputs named in `which` (keys of contents()) are equal, with the differences shown."""
    assert expected["events"] and expected["derived"] and expected["segments"] and expected["table events"]
    for what in which:
        if isinstance(expected[what], Counter) and got[what] != expected[what]:
            extra, missing = got[what] - expected[what], expected[what] - got[what]
            raise AssertionError(f"{what} differs after {faults}: {sum(extra.values())} records too many, e.g. "
                                 f"{list(extra)[:3]}; {sum(missing.values())} missing, e.g. {list(missing)[:3]}")
        assert got[what] == expected[what], f"{what} differs after {faults}"


def live_run(kafka, tmp_path_factory, name: str, envs, hurt, other_owner: bool = False) -> tuple[dict, list[str]]:
    """Feed `envs` while the jobs run and `hurt(pipeline, owner)` runs beside the feed; then
    settle. With `other_owner`, another process owns the warehouse first (`owner`), so
    metric_rollup writes through its HTTP interface."""
    cfg = config(tmp_path_factory, kafka, name)
    owner = OtherOwner(cfg.clickhouse) if other_owner else None
    pipeline = Pipeline(cfg)
    failed = []

    def hurting_thread():
        try:
            hurt(pipeline, owner)
        except BaseException as e:  # noqa: BLE001 - raised again in the test's thread
            failed.append(e)

    ticking = threading.Event()

    def clock():
        """After the calls, the clock moves on a second per second, as a running collector's
        heartbeats move it (a job restarted after the last call learns the time from them)."""
        ticking.wait()
        at = envs[-1]["received_at"] + 3_600_000
        while ticking.is_set():
            at += 1000
            loader.send_heartbeat(kafka, cfg.topics["raw"], at)
            time.sleep(1)

    try:
        hurting = threading.Thread(target=hurting_thread)
        threading.Thread(target=clock, daemon=True).start()
        time.sleep(8)  # the jobs' start-up, so that the faults fall mid-stream
        hurting.start()
        feed(kafka, cfg, envs, FEED_S)
        ticking.set()
        hurting.join()
        if failed:
            raise failed[0]
        pipeline.settle(kafka)
        got = contents(kafka, cfg)
        got["status"] = status.status(cfg, kafka)  # what `bin/tracktor status` shows then
        got["inserts refused"] = pipeline.procs["metric_rollup"].log.read_bytes().count(FAULT_CONSTRAINT.encode())
        return got, pipeline.faults
    finally:
        ticking.clear()
        pipeline.stop()
        if owner:
            owner.proc.send_signal(signal.SIGCONT)
            owner.stop()


def killing(seed: int):
    """SIGKILL a random job at random moments (the seed's), each restarted at once."""
    rng = random.Random(seed)

    def hurt(pipeline, _):
        until = time.monotonic() + FEED_S + 6
        while time.monotonic() < until:
            time.sleep(rng.uniform(2.0, 7.0))
            pipeline.kill(rng.choice(jobs.NAMES))
    return hurt


FAULT_CONSTRAINT = "injected_fault"


def failing_inserts(cfg, log, seconds: float, at_most_s: float = 180) -> None:
    """Once metric_rollup has migrated the warehouse, every insert into its events table
    fails (a constraint no row meets) for `seconds`, and on until one has met it
    (metric_rollup's `log` says so; at most `at_most_s`): its job fails and restarts from its
    last checkpoint meanwhile (within its flink.restart_attempts, 2 s apart). Not a fixed
    time after the first rows: with every job starting on 2 cores the calls can all be in by
    then, written in a checkpoint or two, and the fault fell where nothing was written."""
    client = warehouse.connect(cfg.clickhouse)
    db = cfg.clickhouse.database
    migrations = len(migration_files())
    try:
        deadline = time.monotonic() + 300  # every job starting on 2 cores: 153 s seen on a slow day
        while not (client.query(f"EXISTS TABLE {db}.schema_migrations").result_rows[0][0]
                   and client.query(f"SELECT uniqExact(name) FROM {db}.schema_migrations").result_rows[0][0] >= migrations):
            assert time.monotonic() < deadline, "metric_rollup did not migrate the warehouse"
            time.sleep(0.5)
        refused_before = log.read_bytes().count(FAULT_CONSTRAINT.encode())
        client.command(f"ALTER TABLE {db}.events ADD CONSTRAINT {FAULT_CONSTRAINT} CHECK 0")
        time.sleep(seconds)
        until = time.monotonic() + at_most_s
        while log.read_bytes().count(FAULT_CONSTRAINT.encode()) == refused_before and time.monotonic() < until:
            time.sleep(0.5)
        client.command(f"ALTER TABLE {db}.events DROP CONSTRAINT {FAULT_CONSTRAINT}")
    finally:
        client.close()


def stopping_with_savepoints(pipeline, owner):
    """While the calls arrive, inserts into the warehouse failing for 4 s or more; then each job
    stopped with a savepoint and started again from it, one after the other; and before the
    last, the warehouse's owner frozen for 12 s (its HTTP interface answers nothing)."""
    failing_inserts(pipeline.cfg, pipeline.procs["metric_rollup"].log, 4)
    pipeline.faults.append("inserts failing")
    for name in jobs.NAMES:
        if name == "metric_rollup":
            owner.proc.send_signal(signal.SIGSTOP)
            pipeline.faults.append("warehouse frozen")
            time.sleep(12)
            owner.proc.send_signal(signal.SIGCONT)
        pipeline.savepoint(name)
        time.sleep(2)


RUNS = [f"kill-{seed}" for seed in SEEDS] + ["savepoints"]


@pytest.fixture(scope="module", params=RUNS)
def hurt_run(request, kafka, tmp_path_factory, uninterrupted):
    """(what the run left, what the uninterrupted run left, the faults) for each kind of run."""
    envs, expected = uninterrupted
    if request.param == "savepoints":
        got, faults = live_run(kafka, tmp_path_factory, "faults-savepoints", envs, stopping_with_savepoints,
                               other_owner=True)
        assert faults == ["inserts failing"] + [f"savepoint {n}" for n in jobs.NAMES if n != "metric_rollup"] + \
            ["warehouse frozen", "savepoint metric_rollup"]
        assert got["inserts refused"], "no insert met the injected fault: it fell where nothing was written"
    else:
        seed = int(request.param.split("-")[1])
        got, faults = live_run(kafka, tmp_path_factory, f"faults-{request.param}", envs, killing(seed))
        assert len(faults) >= 4, faults
    return got, expected, faults


def test_identity_merges_outputs_are_those_of_the_uninterrupted_run(hurt_run):
    assert_same(*hurt_run, ("events", "identities", "profiles"))


def test_segment_changes_are_those_of_the_uninterrupted_run(hurt_run):
    assert_same(*hurt_run, ("segments",))


def test_the_warehouse_holds_the_rows_and_gives_the_answers_of_the_uninterrupted_run(hurt_run):
    assert_same(*hurt_run, [what for what in hurt_run[1] if what.startswith(("table ", "metric ", "funnel"))])


def test_the_status_shows_each_job_running_caught_up_and_checkpointing(hurt_run):
    entries = {e["job"]: e for e in hurt_run[0]["status"]}
    assert list(entries) == list(jobs.NAMES)
    for name, e in entries.items():
        assert e["state"] == "RUNNING" and e["last_checkpoint"] and e["dead_letters"] == 0, (name, e)
        # behind by the clock's heartbeats at most (two a second; Flink commits offsets late)
        assert e["lag"] and all(behind is not None and behind <= 100 for behind in e["lag"].values()), (name, e)
    assert "lag " in status.render(list(entries.values()))


def test_no_record_is_a_dead_letter(hurt_run):
    assert_same(*hurt_run, ("dead_letter",))


def test_cart_timeouts_outputs_are_those_of_the_uninterrupted_run(hurt_run):
    assert_same(*hurt_run, ("derived",))
