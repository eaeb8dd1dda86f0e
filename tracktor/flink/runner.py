"""The one way a job runs: its declaration (`Job`), and the runner that attaches Kafka.

A job file declares `JOB = Job(name, inputs, outputs, build, ...)`; `build(inputs, cfg)`
takes {role: DataStream of Row(k, v, ts)} and returns the DataStream of Row(topic, k, v, ts)
it writes. The runner makes the environment, a Kafka source per input role and the
exactly-once sink, and derives every name from the job's: consumer groups
`tracktor-<job>-<role>`, the transactional-id prefix `tracktor-<job>`, operator uids
`<job>-<operator>`. `bin/tracktor job NAME` and `python -m jobs.NAME` both come here.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tracktor import config as config_mod, logs
from tracktor.config import Config
from tracktor.flink import kafka
from tracktor.flink.environment import one_java_thread, savepoint_dir, stream_env
from tracktor.flink.status import registered

log = logging.getLogger(__name__)
SAVEPOINT_WAIT_S = 120  # how long a stop asked for during start-up waits for the job to take a savepoint


@dataclass(frozen=True)
class Job:
    name: str
    inputs: tuple[str, ...]                 # topic roles read (kafka.topics in the config)
    outputs: tuple[str, ...]                # topic roles written
    build: Callable                         # build({role: DataStream}, cfg) -> DataStream of Row(topic, k, v, ts)
    # Inputs whose heartbeats drive the job's event time (its watermark), and outputs it
    # writes its own clock into for the jobs after it (docs/architecture.md, "Time").
    clock_inputs: tuple[str, ...] = ()
    clock_outputs: tuple[str, ...] = ()
    execution_mode: str | None = None       # forces flink.execution_mode (chDB must not load in the JVM)
    after_bounded_run: Callable[[Config], None] | None = None
    summary: str = ""

    @property
    def slug(self) -> str:
        return self.name.replace("_", "-")

    def group_id(self, role: str) -> str:
        return f"tracktor-{self.slug}-{role}"

    @property
    def transactional_id_prefix(self) -> str:
        return f"tracktor-{self.slug}"

    def uid(self, operator: str) -> str:
        return f"{self.slug}-{operator}"

    @property
    def feedback(self) -> bool:
        """It reads a topic it writes (the per-person jobs' merge handoffs)."""
        return bool(set(self.inputs) & set(self.outputs))

    def flink_settings(self, cfg: Config):
        """The `flink:` settings this job runs with (its own `flink.jobs` entry applied)."""
        return cfg.flink.for_job(self.name, self.execution_mode)


def run(job: Job, cfg: Config, bootstrap_servers: str, bounded: bool, restore: Path | None = None,
        allow_non_restored: bool = False) -> None:
    """Run `job` on Kafka: until stopped (resuming from its newest checkpoint or savepoint, or
    from `restore`), or with `bounded` over its input topics as they are now, from their
    beginning to their end. Unbounded, SIGTERM or SIGINT stops it with a savepoint
    (`until_stopped`).

    A job that reads what it writes (merge handoffs) cannot stop at its inputs' end as they
    were at its start: what it hands over during the run must still be read. Bounded, it
    replays with consumer groups of its own and is stopped once they have committed every
    record of its inputs, handoffs included (`drain`). Its handoffs go through a topic of
    its own, deleted after it (`replay_handoffs`)."""
    from tracktor.topics import delete_topics, partition_counts

    if bounded and restore:  # a restored snapshot is the job's (CLAIM): a run that ends would discard it
        raise ValueError("--bounded replays the inputs from their beginning with no state; --from-savepoint resumes "
                         "a job from its state: give one of them")
    flink = job.flink_settings(cfg)
    stop = None if bounded else stop_requested()  # from now on: a stop during start-up is one too
    replay = f"-replay-{uuid.uuid4().hex[:8]}" if bounded and job.feedback else ""
    if replay:  # its end shows in committed offsets: checkpoint often
        flink = flink.model_copy(update={"checkpoint_interval_ms": min(flink.checkpoint_interval_ms, 1000)})
        cfg = replay_handoffs(cfg, bootstrap_servers, replay)
    topics = cfg.topics
    try:
        with one_java_thread():
            env, t_env = stream_env(flink, job.name + replay, resume=not bounded, restore=restore,
                                    serve_rest=not bounded, allow_non_restored=allow_non_restored)
            groups = {role: job.group_id(role) + replay for role in job.inputs}
            inputs, written_clocks = {}, jobs_clock()
            for role in job.inputs:
                source_clock = (kafka.HEARTBEATS if role in written_clocks else kafka.RECORDS) \
                    if role in job.clock_inputs else None
                stream = kafka.source(t_env, f"{role}_in", bootstrap_servers, topics[role], groups[role],
                                      bounded and not replay, flink, clock=source_clock)
                inputs[role] = kafka.without_clock(stream) if job.clock_inputs and role not in job.clock_inputs \
                    else stream
            out = job.build(inputs, cfg)
            clock = partition_counts(bootstrap_servers, [topics[r] for r in job.clock_outputs]) \
                if job.clock_outputs else None
            result = kafka.sink(t_env, out, f"{job.name}_out", bootstrap_servers, [topics[r] for r in job.outputs],
                                job.transactional_id_prefix + replay, flink, clock)
        if replay:
            drain(result, bootstrap_servers, {topics[role]: groups[role] for role in job.inputs}, flink)
            shutil.rmtree(flink.checkpoint_dir / (job.name + replay), ignore_errors=True)
        elif bounded:
            result.wait()
        else:
            with registered(flink, job.name, str(result.get_job_client().get_job_id())):
                until_stopped(result, savepoint_dir(flink, job.name), stop)
    finally:
        if replay:
            delete_topics(bootstrap_servers, [topics[HANDOFFS]])
    if bounded and job.after_bounded_run:
        job.after_bounded_run(cfg)


HANDOFFS = "handoffs"  # the per-person jobs' topic role for merge handoffs (udfs/persons.py)


def replay_handoffs(cfg: Config, bootstrap_servers: str, replay: str) -> Config:
    """`cfg` with a handoffs topic of the replay's own (`<handoffs topic><replay>`, as many
    partitions as the shared one), created here. tracktor.handoffs holds the live job's
    handoffs and earlier runs': a replay reading them would take in states and records
    that are not its persons' (a record forwarded there decided again, out of its time),
    and a live job reading the replay's would too."""
    from tracktor.topics import ensure_topics, partition_counts

    shared = cfg.topics[HANDOFFS]
    cfg = cfg.updated(kafka={"topics": {HANDOFFS: shared + replay}})
    ensure_topics(bootstrap_servers, cfg.kafka, [cfg.topics[HANDOFFS]],
                  partition_counts(bootstrap_servers, [shared])[shared])
    return cfg


def jobs_clock() -> set[str]:
    """The topic roles a job writes its clock into (its `clock_outputs`): their readers take
    their time from those heartbeats alone (tracktor/flink/kafka.py, HEARTBEATS)."""
    import jobs
    return {role for name in jobs.NAMES for role in jobs.load(name).clock_outputs}


def stop_requested() -> threading.Event:
    """An event set by SIGTERM or SIGINT (when called in the main thread)."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    return stop


def until_stopped(result, savepoints: Path, stop: threading.Event) -> None:
    """Wait for the job; once `stop` is set, stop it with a savepoint in `savepoints`, which
    the next start resumes from (a deployment upgrades a job this way). A job that fails
    raises its error here."""
    client = result.get_job_client()
    while not stop.wait(0.5):
        status = str(client.get_job_status().result())
        if status in ("FAILED", "CANCELED", "FINISHED"):
            result.wait()  # raises the job's error
            return
    from py4j.protocol import Py4JJavaError
    from pyflink.java_gateway import get_gateway
    canonical = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    log.info("stopping with a savepoint in %s", savepoints)
    deadline = time.monotonic() + SAVEPOINT_WAIT_S
    while True:
        try:
            path = client._j_job_client.stopWithSavepoint(False, savepoints.as_uri(), canonical).get()
            break
        except Py4JJavaError:  # a job still starting takes no savepoint yet: its tasks are not all running
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    log.info("stopped; savepoint %s (the next start resumes from it)", path)
    print(f"savepoint: {path}", flush=True)


def drain(result, bootstrap_servers: str, groups: dict[str, str], flink) -> None:
    """Stop a running job once its consumer groups have committed every record of their
    topics on two checks a checkpoint apart (what it read then is all in its committed output)."""
    from tracktor.topics import caught_up

    client = result.get_job_client()
    settled = 0
    while settled < 2:
        time.sleep(max(1.0, flink.checkpoint_interval_ms / 1000))
        status = str(client.get_job_status().result())
        if "FAILED" in status or "CANCELED" in status:
            result.wait()  # raises the job's error
            raise RuntimeError(f"the replay ended {status}")
        settled = settled + 1 if caught_up(bootstrap_servers, groups) else 0
    client.cancel().result()


def collect(job: Job, cfg: Config, records: dict[str, list[tuple]]) -> list[tuple]:
    """`job`'s outputs for in-memory inputs ({role: [(k, v, ts), ...]}) as (topic, k, v, ts),
    without Kafka: for tests of a job's wiring (its logic is tested in udfs/)."""
    from pyflink.common import Row

    flink = job.flink_settings(cfg)
    with one_java_thread():
        env, _ = stream_env(flink, job.name)
        inputs = {role: env.from_collection([Row(*r) for r in records.get(role, [])], type_info=kafka.source_type())
                  for role in job.inputs}
        out = job.build(inputs, cfg)
    with out.execute_and_collect() as rows:
        return [tuple(r) for r in rows]


def main(job: Job, argv=None) -> None:
    """`python -m jobs.NAME [--config FILE] [--bounded]`."""
    from tracktor.dev import stack

    p = argparse.ArgumentParser(prog=f"python -m jobs.{job.name}", description=job.summary or job.name)
    p.add_argument("--config", default=None, help="YAML configuration (default: tracktor.yaml)")
    p.add_argument("--bounded", action="store_true", help=BOUNDED_HELP)
    p.add_argument("--from-savepoint", type=Path, default=None, help=FROM_SAVEPOINT_HELP)
    p.add_argument("--allow-non-restored-state", action="store_true", help=ALLOW_NON_RESTORED_HELP)
    args = p.parse_args(argv)
    cfg = config_mod.load(args.config)
    logs.setup(cfg.logging)
    run(job, cfg, stack.resolve_bootstrap(cfg), args.bounded, args.from_savepoint, args.allow_non_restored_state)


BOUNDED_HELP = ("replay the input topics from their beginning and stop at their end "
                "(without it: run on, resuming from the newest checkpoint or savepoint; "
                "SIGTERM or Ctrl-C stops the job with a savepoint)")
FROM_SAVEPOINT_HELP = "restore this savepoint or checkpoint directory instead of the newest one"
ALLOW_NON_RESTORED_HELP = ("start even when the checkpoint or savepoint holds state no operator claims (after an "
                           "upgrade that changed the job's graph: docs/architecture.md); that state is dropped")
