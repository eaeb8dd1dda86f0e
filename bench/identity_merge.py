"""identity_merge throughput per core, against a pass-through PyFlink job as the baseline.

All jobs read the same tracktor.raw (generated: 4 apps, anonymous visitors who identify,
second devices, aliases, properties, carts) through the same Kafka source, the same
envelope parsing (udfs.envelope.parse_raw) and the same exactly-once Kafka sink. The
baseline pass-through writes each parsed envelope back (Kafka -> Python -> Kafka), one
Python call per record; the bundled pass-through does the same work behind identity_merge's
own plumbing (records bundled and keyed by app in the JVM, one Python call per bundle:
tracktor.flink.bundled_by_record_key), so the ratio to it is the cost of the merging alone;
the JVM copy is the same source and sink with no Python at all: the ceiling of any PyFlink
job reading and writing Kafka on this machine. A JVM copy run first, not counted, warms
the JVM's JIT (otherwise the first measured job pays for it).

Throughput is counted from the output records' Kafka timestamps (first to last), so the
mini-cluster start-up is left out; the wall time with start-up is printed beside it.

    bin/tracktor setup && .venv/bin/python bench/identity_merge.py [--events 200000] [--bundle 500]
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402
from pyflink.common import Row  # noqa: E402
from pyflink.datastream import KeyedProcessFunction  # noqa: E402

from jobs import identity_merge  # noqa: E402
from tracktor.dev import loader, stack  # noqa: E402
from tracktor.flink.environment import (bundle_output_type, bundled_by_record_key, insert_into_kafka, kafka_rows,  # noqa: E402
                            output_type, stream_env, unbundled)
from tracktor.dev.kafka_local import LocalKafka  # noqa: E402
from tracktor.dev.sample_data import Generator  # noqa: E402
from udfs.envelope import BadRecord, parse_raw  # noqa: E402

APPS = {"bench-a": "video", "bench-b": "shop", "bench-c": "video", "bench-d": "shop"}
CORES = os.cpu_count() or 1


def reparsed(text: str) -> str:
    """The pass-through's work per record: parse the envelope as identity_merge does, write it back."""
    try:
        env = parse_raw(text)
    except BadRecord:
        env = {}
    return orjson.dumps(env).decode()


class BundledReparse(KeyedProcessFunction):
    def __init__(self, topic: str):
        self.topic = topic

    def process_element(self, texts, ctx):
        n = len(texts)
        yield Row([self.topic] * n, [ctx.get_current_key()] * n, [reparsed(text) for text in texts])


def pass_through(env, t_env, bootstrap, topics, flink_cfg: dict, bundled: bool):
    """Kafka -> parse_raw -> Kafka; `bundled` adds the bundling and keying identity_merge has."""
    raw = kafka_rows(t_env, "raw_in", bootstrap, topics["raw"], "bench-pass-through", bounded=True)
    topic = topics["events"]
    if bundled:
        bundles = bundled_by_record_key(raw, flink_cfg.bundle_max_records, flink_cfg.bundle_max_delay_ms)
        out = unbundled(bundles.process(BundledReparse(topic), output_type=bundle_output_type()))
    else:
        out = raw.map(lambda r: Row(topic, r[0], reparsed(r[1])), output_type=output_type())
    return insert_into_kafka(t_env, out, "pass_out", bootstrap, [topic], "bench-pass-through")


def span(bootstrap: str, topics: list[str]) -> tuple[int, float]:
    """(records, seconds from the first record's timestamp to the last's) over `topics`."""
    from kafka import KafkaConsumer
    c = KafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                      isolation_level="read_committed", consumer_timeout_ms=3000, max_poll_records=10000,
                      fetch_max_bytes=64 * 1024 * 1024)
    n, lo, hi = 0, None, None
    for m in c:
        n += 1
        lo = m.timestamp if lo is None else min(lo, m.timestamp)
        hi = m.timestamp if hi is None else max(hi, m.timestamp)
    c.close()
    return n, (hi - lo) / 1000 if n > 1 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000, help="raw calls to process (about)")
    ap.add_argument("--bundle", type=int, default=500, help="flink.bundle_max_records for the bundled jobs")
    ap.add_argument("--execution-mode", choices=("thread", "process"), default="thread",
                    help="flink.execution_mode: thread runs every subtask's Python in one interpreter (one GIL)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-identity-"))
    atexit.register(shutil.rmtree, tmp, True)
    people = max(1, args.events // (8 * len(APPS)))
    envs = list(Generator(seed=1, people=people, apps=APPS))
    merges = sum(e["type"] in ("identify", "alias") for e in envs)
    print(f"{len(envs):,} raw calls for {len(APPS)} apps ({merges:,} identify/alias, "
          f"{sum(e['type'] == 'set' for e in envs):,} property sets); {CORES} cores", flush=True)

    results = {}
    with LocalKafka(tmp / "kafka") as broker:
        bs = broker.bootstrap_servers
        raw_topic = {"raw": "bench.raw"}
        stack.ensure_topics(bs, raw_topic, 4)
        loader.send(bs, raw_topic["raw"], envs, total=len(envs), label="raw calls sent")
        names = ("JVM copy", "pass-through", "bundled pass-through", "identity_merge")
        runs = [("JVM warm-up", 1)] + [(name, p) for p in (1, 2) for name in names]
        for name, parallelism in runs:
            run_id = f"{name.replace('_', '-').replace(' ', '-')}-p{parallelism}"
            topics = {"raw": raw_topic["raw"], **{r: f"bench.{run_id}.{r}" for r in identity_merge.OUTPUT_ROLES}}
            stack.ensure_topics(bs, topics, 4)
            flink = {"execution_mode": args.execution_mode, "parallelism": parallelism, "state_backend": "hashmap",
                     "checkpoint_interval_ms": 5000, "checkpoint_dir": str(tmp / "chk" / run_id),
                     "bundle_max_records": args.bundle, "bundle_max_delay_ms": 100}
            env, t_env = stream_env(flink, run_id)
            t = time.monotonic()
            if name in ("JVM copy", "JVM warm-up"):
                rows = kafka_rows(t_env, "raw_in", bs, topics["raw"], "bench-jvm-copy", bounded=True)
                insert_into_kafka(t_env, rows, "copy_out", bs, [topics["events"]], "bench-jvm-copy").wait()
                out_topics = [topics["events"]]
            elif name.endswith("pass-through"):
                pass_through(env, t_env, bs, topics, flink, bundled=name.startswith("bundled")).wait()
                out_topics = [topics["events"]]
            else:
                identity_merge.build(env, t_env, bs, topics, bounded=True, flink_cfg=flink).wait()
                out_topics = [topics[r] for r in identity_merge.OUTPUT_ROLES]
            wall = time.monotonic() - t
            records, seconds = span(bs, out_topics)
            rate = len(envs) / seconds
            results[(name, parallelism)] = rate
            print(f"{name:20s} p{parallelism}: {rate:9,.0f} calls/s = {rate / min(parallelism, CORES):9,.0f} per core"
                  f"  ({records:,} records out in {seconds:.1f}s; {wall:.1f}s with start-up)", flush=True)

    print()
    summary = {}
    for p in (1, 2):
        ratio = results[("identity_merge", p)] / results[("pass-through", p)]
        bundled = results[("identity_merge", p)] / results[("bundled pass-through", p)]
        summary[f"p{p}"] = {"identity_calls_per_s": round(results[("identity_merge", p)]),
                            "identity_calls_per_s_per_core": round(results[("identity_merge", p)] / min(p, CORES)),
                            "pass_through_calls_per_s": round(results[("pass-through", p)]),
                            "bundled_pass_through_calls_per_s": round(results[("bundled pass-through", p)]),
                            "jvm_copy_calls_per_s": round(results[("JVM copy", p)]),
                            "ratio_to_pass_through": round(ratio, 2), "ratio_to_bundled_pass_through": round(bundled, 2)}
        print(f"parallelism {p}: identity_merge / pass-through = {ratio:.2f}   (/ bundled pass-through = {bundled:.2f}; "
              f"/ JVM copy = {results[('identity_merge', p)] / results[('JVM copy', p)]:.2f})")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
