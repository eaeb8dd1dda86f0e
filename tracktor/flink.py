"""The one place that builds a PyFlink environment: jars, interpreter, checkpoints, parallelism."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from tracktor.kafka_local import JARS_DIR


def connector_jar() -> Path:
    jars = sorted((JARS_DIR / "flink").glob("flink-sql-connector-kafka-*.jar"))
    if not jars:
        raise RuntimeError(f"no Flink Kafka connector in {JARS_DIR / 'flink'}: run `bin/tracktor setup` first")
    return jars[-1]


def stream_env(flink_cfg: dict, job_name: str):
    """A StreamExecutionEnvironment plus a StreamTableEnvironment on it, configured from `flink:`."""
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    # The Python workers must run this interpreter (the venv's), and thread mode resolves
    # packages through the `python` on PATH.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    conf = Configuration()
    settings = {
        "pipeline.name": job_name,
        "pipeline.jars": connector_jar().as_uri(),
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "python.execution-mode": flink_cfg["execution_mode"],
        "parallelism.default": str(flink_cfg["parallelism"]),
        "state.backend.type": flink_cfg["state_backend"],
        "execution.checkpointing.interval": f"{flink_cfg['checkpoint_interval_ms']}ms",
        "execution.checkpointing.dir": Path(flink_cfg["checkpoint_dir"], job_name).resolve().as_uri(),
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "python.fn-execution.bundle.size": str(flink_cfg.get("bundle_size", 1000)),
        "python.fn-execution.bundle.time": str(flink_cfg.get("bundle_time_ms", 200)),
        "taskmanager.memory.process.size": flink_cfg.get("taskmanager_memory", "2g"),
        "rest.bind-address": "127.0.0.1",
        "rest.address": "127.0.0.1",
    }
    if flink_cfg.get("restore_from"):
        settings["execution.state-recovery.path"] = flink_cfg["restore_from"]
    for k, v in settings.items():
        conf.set_string(k, v)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    t_env = StreamTableEnvironment.create(env)
    return env, t_env
