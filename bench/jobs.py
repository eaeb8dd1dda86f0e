"""Each job's throughput per core at parallelism 1 and 2, against two baselines of the same run.

The calls are generated (tracktor.dev.sample_data: both demo apps, anonymous visitors who
identify, second devices, aliases, properties, carts) into one tracktor.raw; the jobs then
run one after the other, bounded, as `bin/tracktor demo` runs them: identity_merge over the
calls, cart_timeout and segment_eval over its events (with the shipped segments),
metric_rollup over everything into chDB. Baselines, over the same raw topic and the same
Kafka source and exactly-once sink: a PyFlink pass-through (one Python call per record,
Kafka -> Python -> Kafka) and the JVM copy (no Python at all: the ceiling of any job here).

A job's rate is the records of its input topics over its wall time less its start-up (the
same job over empty topics); /core divides by the parallelism. identity_merge also runs with
checkpoints every 1 s and every 5 s: what a shorter interval (fresher output) costs. With
--quick, parallelism 1 only and one start-up (the pass-through's) for every job.

    bin/tracktor bench --only jobs [--quick]   (or .venv/bin/python bench/jobs.py [--people N])
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, arguments, report  # noqa: E402

PIPELINE = ("identity_merge", "cart_timeout", "segment_eval", "metric_rollup")


def baselines():
    """The pass-through and the JVM copy as jobs of the runner's shape. They write to the
    config's dead_letter topic, which nothing in this benchmark reads."""
    from pyflink.common import Row

    from tracktor.flink import kafka
    from tracktor.flink.runner import Job

    def passthrough(inputs, cfg):
        topic = cfg.topics["dead_letter"]
        return inputs["raw"].map(lambda r: Row(topic, r[0], r[1], r[2]), output_type=kafka.output_type())

    def copy(inputs, cfg):  # Row(k, v, ts) goes to the sink as it is: one output topic takes no topic column
        return inputs["raw"]

    return {"PyFlink pass-through": Job("bench_passthrough", ("raw",), ("dead_letter",), passthrough),
            "JVM copy": Job("bench_copy", ("raw",), ("dead_letter",), copy)}


def main() -> None:
    ap = arguments(__doc__)
    ap.add_argument("--people", type=int, default=None, help="visitors per app (default 6000; quick: 2000)")
    args = ap.parse_args()
    people = args.people or (2000 if args.quick else 6000)

    import jobs
    from tests.conftest import BEGINNING, make_config, read_topic
    from tracktor.dev import loader
    from tracktor.dev.kafka_local import LocalKafka
    from tracktor.dev.sample_data import Generator
    from tracktor.flink import runner
    from tracktor.topics import ensure_topics

    tmp = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    figures = []
    try:
        with LocalKafka(tmp / "kafka") as broker:
            bs = broker.bootstrap_servers
            calls = sorted(Generator(seed=5, people=people, apps={"demo-video": "video", "demo-shop": "shop"},
                                     start_ms=BEGINNING, days=3), key=lambda e: e["received_at"])
            raw = None

            def config(name: str, parallelism: int, **flink):
                (tmp / name).mkdir()
                cfg = make_config(tmp / name, name, bs, parallelism=parallelism, **flink)
                if raw:
                    cfg = cfg.updated(kafka={"topics": {"raw": raw}})
                ensure_topics(bs, cfg.kafka, partitions=4)
                return cfg

            empty = config("empty", 1)
            raw = config("raw", 1).topics["raw"]
            loader.send(bs, raw, calls, label="calls loaded")
            loader.send_heartbeat(bs, raw, calls[-1]["received_at"] + 3_600_000)
            base = baselines()

            def timed(job, cfg) -> float:
                t = time.monotonic()
                runner.run(job, cfg, bs, bounded=True)
                return time.monotonic() - t

            def start_up(job, parallelism) -> float:
                cfg = empty if parallelism == 1 else config(f"empty-{job.slug}-{parallelism}", parallelism)
                return timed(job, cfg.updated(kafka={"topics": {"raw": empty.topics["raw"]}}))

            timed(base["JVM copy"], config("warm-up", 1))  # the JVM's JIT; not counted
            shared_start = start_up(base["PyFlink pass-through"], 1) if args.quick else None
            for parallelism in (1,) if args.quick else (1, 2):
                rates = {}
                for name, job in base.items():
                    cfg = config(f"{job.slug}-{parallelism}", parallelism)
                    wall = timed(job, cfg)
                    start = shared_start if shared_start is not None else start_up(job, parallelism)
                    rates[name] = len(calls) / max(0.1, wall - start)
                    print(f"p{parallelism} {name}: {len(calls):,} calls in {wall:.1f}s ({start:.1f}s start-up)", flush=True)
                cfg = config(f"pipeline-{parallelism}", parallelism)
                for name in PIPELINE:
                    job = jobs.load(name)
                    wall = timed(job, cfg)
                    records = sum(len(read_topic(bs, cfg.topics[role])) for role in job.inputs)
                    start = shared_start if shared_start is not None else start_up(job, parallelism)
                    rate = records / max(0.1, wall - start)
                    print(f"p{parallelism} {name}: {records:,} input records in {wall:.1f}s ({start:.1f}s start-up)",
                          flush=True)
                    for base_name in base:
                        figures.append(Figure("jobs", f"{name} p{parallelism}, records/s per core", rate / parallelism,
                                              "records/s", f"{base_name} p{parallelism}, per core",
                                              rates[base_name] / parallelism))
                if parallelism == 1:  # what checkpointing every second costs against every 5 s
                    merge, cost = jobs.load("identity_merge"), {}
                    for interval in (1000, 5000):
                        wall = timed(merge, config(f"checkpoints-{interval}", 1, checkpoint_interval_ms=interval))
                        cost[interval] = len(calls) / max(0.1, wall - (shared_start or start_up(merge, 1)))
                        print(f"identity_merge, checkpoints every {interval} ms: {len(calls):,} calls in {wall:.1f}s",
                              flush=True)
                    figures.append(Figure("jobs", "identity_merge p1, checkpoints every 1 s, records/s", cost[1000],
                                          "records/s", "the same, every 5 s", cost[5000]))
                figures.append(Figure("jobs", f"PyFlink pass-through p{parallelism}, per core",
                                      rates["PyFlink pass-through"] / parallelism, "records/s",
                                      f"JVM copy p{parallelism}, per core", rates["JVM copy"] / parallelism))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(figures)


if __name__ == "__main__":
    main()
