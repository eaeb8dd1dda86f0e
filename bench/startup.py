"""How long a Flink job takes to start here, against the JVM's own start as the baseline.

Measures, in one run:
  jvm        launching PyFlink's Java gateway (a bare JVM with Flink on the classpath) — baseline
  first      execute() of a trivial job (collection -> Python map -> collect) until its first record
  kafka job  identity_merge, bounded, over one call: Kafka -> Python -> Kafka (exactly once), start to finish

    bin/tracktor bench --only startup   (or .venv/bin/python bench/startup.py)
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, arguments, report  # noqa: E402


def main() -> None:
    arguments(__doc__).parse_args()  # --quick changes nothing: this one is small
    from tracktor import config
    from tracktor.flink.environment import use_this_interpreter
    use_this_interpreter(config.load().flink.jvm_options)  # the JVM as a job starts it
    t = time.monotonic()
    from pyflink.java_gateway import get_gateway
    get_gateway()
    jvm = time.monotonic() - t

    import jobs
    from pyflink.common import Types
    from tests.conftest import make_config
    from tracktor.dev import envelopes as E, loader
    from tracktor.dev.kafka_local import LocalKafka
    from tracktor.flink import runner
    from tracktor.flink.environment import stream_env
    from tracktor.topics import ensure_topics

    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        cfg = make_config(tmp, "bench-startup")
        env, _ = stream_env(cfg.flink, "bench-startup")
        ds = env.from_collection([1, 2, 3], type_info=Types.INT()).map(lambda x: x * 2, output_type=Types.INT())
        t = time.monotonic()
        with ds.execute_and_collect() as results:
            next(results)
            first = time.monotonic() - t
            list(results)
        with LocalKafka(tmp / "kafka") as broker:
            ensure_topics(broker.bootstrap_servers, cfg.kafka, partitions=1)
            loader.send(broker.bootstrap_servers, cfg.topics["raw"], [E.track("demo-video", "a-1", "Site visit", int(time.time() * 1000))],
                        label="sent")
            t = time.monotonic()
            runner.run(jobs.load("identity_merge"), cfg, broker.bootstrap_servers, bounded=True)
            kafka_job = time.monotonic() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = "JVM (gateway) start"
    report([Figure("startup", base, jvm, "s", lower_is_better=True),
            Figure("startup", "execute() to the first record", first, "s", base, jvm, lower_is_better=True),
            Figure("startup", "identity_merge over one call, bounded", kafka_job, "s", base, jvm,
                   lower_is_better=True)])


if __name__ == "__main__":
    main()
