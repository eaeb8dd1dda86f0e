"""How long a Flink job takes to start here, against the JVM's own start as the baseline.

Measures, in one run:
  jvm        launching PyFlink's Java gateway (a bare JVM with Flink on the classpath) — baseline
  first      execute() of a trivial job (collection -> Python map -> collect) until its first record
  kafka job  a bounded Kafka -> Python -> Kafka (exactly-once) job over one record, start to finish

    bin/tracktor setup && .venv/bin/python bench/startup.py
"""
from __future__ import annotations

import atexit
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from tracktor.dev.kafka_local import LocalKafka

    from tracktor.flink.environment import use_this_interpreter
    use_this_interpreter()
    t = time.monotonic()
    from pyflink.java_gateway import get_gateway
    get_gateway()
    jvm = time.monotonic() - t

    from pyflink.common import Types
    from tracktor.flink.environment import stream_env

    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    atexit.register(shutil.rmtree, tmp, True)
    flink = {"execution_mode": "thread", "parallelism": 1, "state_backend": "hashmap",
             "checkpoint_interval_ms": 1000, "checkpoint_dir": str(tmp / "chk"),
             "bundle_max_records": 500, "bundle_max_delay_ms": 100}
    env, _ = stream_env(flink, "bench-startup")
    ds = env.from_collection([1, 2, 3], type_info=Types.INT()).map(lambda x: x * 2, output_type=Types.INT())
    t = time.monotonic()
    with ds.execute_and_collect() as results:
        next(results)
        first = time.monotonic() - t
        list(results)

    from jobs import identity_merge
    from tracktor.dev import envelopes as E, loader, stack
    topics = {r: f"bench.{r}" for r in ("raw", "events", "identities", "profiles", "dead_letter")}
    with LocalKafka(tmp / "kafka") as broker:
        stack.ensure_topics(broker.bootstrap_servers, topics, 1)
        loader.send(broker.bootstrap_servers, topics["raw"], [E.track("b", "a-1", "Site visit", 1)], label="sent")
        env, t_env = stream_env(flink, "bench-kafka")
        t = time.monotonic()
        identity_merge.build(env, t_env, broker.bootstrap_servers, topics, bounded=True, flink_cfg=flink).wait()
        kafka_job = time.monotonic() - t

    print(json.dumps({"jvm_start_s": round(jvm, 2), "first_record_s": round(first, 2),
                      "kafka_job_total_s": round(kafka_job, 2)}))
    print(f"JVM (gateway) start          {jvm:6.2f} s   baseline")
    print(f"execute() to first record    {first:6.2f} s   {first / jvm:5.1f}x the JVM start")
    print(f"Kafka job, one record        {kafka_job:6.2f} s   {kafka_job / jvm:5.1f}x the JVM start")


if __name__ == "__main__":
    main()
