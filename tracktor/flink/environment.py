"""The one place that builds a PyFlink environment: jars, interpreter, checkpoints, parallelism."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from tracktor import JARS_DIR


OPERATORS_JAR = JARS_DIR / "tracktor" / "tracktor-flink.jar"


def job_jars() -> list[Path]:
    """The jars a job needs that Flink lacks: the Kafka connector fetched and Tracktor's
    operators (docker/jars/src) built by `bin/tracktor setup`. Either is left out where it is
    not there: on a cluster whose image has both in /opt/flink/lib (docker/Dockerfile.flink)."""
    connectors = sorted((JARS_DIR / "flink").glob("flink-sql-connector-kafka-*.jar"))
    return connectors[-1:] + ([OPERATORS_JAR] if OPERATORS_JAR.exists() else [])


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint (chk-N with its _metadata) under `directory`, if any."""
    done = [m.parent for m in directory.glob("*/chk-*/_metadata")]
    return max(done, key=lambda p: p.stat().st_mtime) if done else None


def use_this_interpreter() -> None:
    """Python workers must run this interpreter (the venv's), and thread mode resolves
    packages through the `python` on PATH — as it was when the JVM started, so call this
    before anything launches PyFlink's gateway."""
    venv_bin = str(Path(sys.executable).parent)
    if not os.environ.get("PATH", "").startswith(venv_bin + os.pathsep):
        os.environ["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"


def stream_env(flink_cfg: dict, job_name: str, resume: bool = False):
    """A StreamExecutionEnvironment plus a StreamTableEnvironment on it, configured from `flink:`.

    With `resume`, the job restores its state from its newest checkpoint: a job stopped or
    killed carries on where that checkpoint left it (its Kafka offsets are in the checkpoint).
    """
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    use_this_interpreter()
    conf = Configuration()
    settings = {
        "pipeline.name": job_name,
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "python.execution-mode": flink_cfg["execution_mode"],
        "parallelism.default": str(flink_cfg["parallelism"]),
        "state.backend.type": flink_cfg["state_backend"],
        "execution.checkpointing.interval": f"{flink_cfg['checkpoint_interval_ms']}ms",
        "execution.checkpointing.dir": Path(flink_cfg["checkpoint_dir"], job_name).resolve().as_uri(),
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "taskmanager.memory.process.size": flink_cfg.get("taskmanager_memory", "2g"),
        "rest.bind-address": "127.0.0.1",
        "rest.address": "127.0.0.1",
        "classloader.check-leaked-classloader": "false",
        # A failing task is retried a few times, then the job fails with the error (the
        # default with checkpointing retries forever, so a bug would hang a bounded run).
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": str(flink_cfg.get("restart_attempts", 3)),
        "restart-strategy.fixed-delay.delay": "2s",
    }
    jars = [jar.as_uri() for jar in job_jars()]
    if jars:
        settings["pipeline.jars"] = ";".join(jars)
    if resume:
        checkpoint = latest_checkpoint(Path(flink_cfg["checkpoint_dir"], job_name))
        if checkpoint is not None:
            logging.getLogger(__name__).info("%s resumes from %s", job_name, checkpoint)
            settings["execution.state-recovery.path"] = checkpoint.as_uri()
    for k, v in settings.items():
        conf.set_string(k, v)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    if jars:  # the client builds operators from these jars' classes too
        from pyflink.util.java_utils import add_jars_to_context_class_loader
        add_jars_to_context_class_loader(jars)
    t_env = StreamTableEnvironment.create(env)
    return env, t_env


def _kafka_table(t_env, table: str, bootstrap_servers: str, topics: list[str], with_topic_column: bool,
                 options: str) -> None:
    """A Kafka table of (k, v) strings — the record key and value, raw — plus `options`."""
    topic_column = "`topic` STRING METADATA," if with_topic_column else ""
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE `{table}` (
          {topic_column}
          `k` STRING,
          `v` STRING
        ) WITH (
          'connector' = 'kafka',
          'topic' = '{";".join(topics)}',
          'properties.bootstrap.servers' = '{bootstrap_servers}',{options}
          'key.format' = 'raw',
          'key.fields' = 'k',
          'value.format' = 'raw',
          'value.fields-include' = 'EXCEPT_KEY'
        )""")


def kafka_rows(t_env, table: str, bootstrap_servers: str, topic: str, group_id: str, bounded: bool):
    """A DataStream of Row(k, v) — the record's key and value as strings — from `topic`.

    Bounded: the whole topic, from the beginning to its end as it is at start (a replay).
    Unbounded: from the committed offsets of `group_id` (earliest when none), unless a
    restored checkpoint says where the job was. Only committed transactions are read.
    """
    startup = "'scan.startup.mode' = 'earliest-offset'," if bounded else \
        "'scan.startup.mode' = 'group-offsets', 'properties.auto.offset.reset' = 'earliest',"
    until = "'scan.bounded.mode' = 'latest-offset'," if bounded else ""
    _kafka_table(t_env, table, bootstrap_servers, [topic], with_topic_column=False, options=f"""
          'properties.group.id' = '{group_id}',
          'properties.isolation.level' = 'read_committed',
          'scan.topic-partition-discovery.interval' = '10s',
          {startup}
          {until}""")
    from pyflink.common import Types
    # RowTypeInfo (to_data_stream gives ExternalTypeInfo, which PyFlink's keyed operators refuse)
    return t_env.to_append_stream(t_env.from_path(table), Types.ROW_NAMED(["k", "v"], [Types.STRING(), Types.STRING()]))


# Rows a job sends to Kafka: (topic, key, value), all strings.
OUTPUT_FIELDS = ["topic", "k", "v"]


def output_type():
    from pyflink.common import Types
    return Types.ROW_NAMED(OUTPUT_FIELDS, [Types.STRING(), Types.STRING(), Types.STRING()])


def bundled_by_record_key(rows, max_records: int, max_delay_ms: int):
    """`kafka_rows` in bundles, keyed by the record key (k): the keyed function's elements
    are lists of values (v) in their order on the topic, its current key is k.

    PyFlink's cost per call of a Python function is most of a light function's cost, so the
    JVM gathers a key's records into bundles first (io.tracktor.flink.RecordBundler: up to
    `max_records` values, none waiting longer than `max_delay_ms`, none held over a
    checkpoint). The keying is done in the JVM too: PyFlink's keyed operators take (key,
    element) rows and key them by their first field with Flink's KeyByKeySelector, and a
    bundle, Row(k, [v, ...]), has that shape (DataStream.key_by would run a Python operator
    of its own before the shuffle).
    """
    from pyflink.common import Types
    from pyflink.datastream.data_stream import DataStream, KeyedStream
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    values = Types.BASIC_ARRAY(Types.STRING())
    bundle_type = Types.ROW_NAMED(["k", "v"], [Types.STRING(), values]).get_java_type_info()
    # At its input's parallelism, so each subtask bundles what one source subtask read, in order.
    bundles = rows._j_data_stream.transform(
        "bundle by key", bundle_type, jvm.io.tracktor.flink.RecordBundler(max_records, max_delay_ms)
    ).setParallelism(rows._j_data_stream.getParallelism())
    keyed = bundles.keyBy(jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info())
    return KeyedStream(keyed, values, DataStream(bundles))


def bundle_output_type():
    """What a bundled function yields: Row([topic, ...], [key, ...], [value, ...])."""
    from pyflink.common import Types
    strings = Types.BASIC_ARRAY(Types.STRING())
    return Types.ROW_NAMED(OUTPUT_FIELDS, [strings, strings, strings])


def unbundled(bundles):
    """A stream of `bundle_output_type` rows as (topic, key, value) rows, split in the JVM."""
    from pyflink.datastream.data_stream import DataStream
    from pyflink.java_gateway import get_gateway

    unbundle = get_gateway().jvm.io.tracktor.flink.Unbundle()
    return DataStream(bundles._j_data_stream.flatMap(unbundle, output_type().get_java_type_info()))


def insert_into_kafka(t_env, rows, table: str, bootstrap_servers: str, topics: list[str],
                      transactional_id_prefix: str):
    """Write a stream of (topic, key, value) rows to `topics`, exactly once; returns the TableResult.

    The Table API sink, not the DataStream KafkaSink: PyFlink's KafkaSink serialises key and
    value from the same element, while here the key and the topic come from their own columns.
    With one topic the connector does not accept a topic column, so it is dropped.
    """
    from pyflink.table.expressions import col

    _kafka_table(t_env, table, bootstrap_servers, topics, with_topic_column=len(topics) > 1, options=f"""
          'sink.delivery-guarantee' = 'exactly-once',
          'sink.transactional-id-prefix' = '{transactional_id_prefix}',
          'properties.transaction.timeout.ms' = '900000',""")
    result = t_env.from_data_stream(rows)
    if len(topics) == 1:
        result = result.select(col("k"), col("v"))
    return result.execute_insert(table)
