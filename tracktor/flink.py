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
        "classloader.check-leaked-classloader": "false",
    }
    if flink_cfg.get("restore_from"):
        settings["execution.state-recovery.path"] = flink_cfg["restore_from"]
    for k, v in settings.items():
        conf.set_string(k, v)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    t_env = StreamTableEnvironment.create(env)
    return env, t_env


def kafka_source(bootstrap_servers: str, topics: list[str], group_id: str, bounded: bool):
    """Strings from `topics`: from the committed offsets of `group_id` (earliest when none),
    to the end of the topics as they are at start when `bounded`."""
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.kafka import KafkaOffsetResetStrategy, KafkaOffsetsInitializer, KafkaSource

    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap_servers)
        .set_topics(*topics)
        .set_group_id(group_id)
        .set_starting_offsets(KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST))
        .set_value_only_deserializer(SimpleStringSchema())
        .set_property("isolation.level", "read_committed")
        .set_property("partition.discovery.interval.ms", "10000")
    )
    if bounded:
        builder = builder.set_bounded(KafkaOffsetsInitializer.latest())
    return builder.build()


# Rows a job sends to Kafka: (topic, key, value), all strings.
OUTPUT_FIELDS = ["topic", "k", "v"]


def output_type():
    from pyflink.common import Types
    return Types.ROW_NAMED(OUTPUT_FIELDS, [Types.STRING(), Types.STRING(), Types.STRING()])


def insert_into_kafka(t_env, rows, table: str, bootstrap_servers: str, topics: list[str],
                      transactional_id_prefix: str):
    """Write a stream of (topic, key, value) rows to `topics`, exactly once; returns the TableResult.

    The Table API sink, not the DataStream KafkaSink: PyFlink's KafkaSink serialises key and
    value from the same element, while here the key and the topic come from their own columns.
    With one topic the connector does not accept a topic column, so it is dropped.
    """
    from pyflink.table.expressions import col

    topic_column = "`topic` STRING METADATA," if len(topics) > 1 else ""
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE `{table}` (
          {topic_column}
          `k` STRING,
          `v` STRING
        ) WITH (
          'connector' = 'kafka',
          'topic' = '{";".join(topics)}',
          'properties.bootstrap.servers' = '{bootstrap_servers}',
          'key.format' = 'raw',
          'key.fields' = 'k',
          'value.format' = 'raw',
          'value.fields-include' = 'EXCEPT_KEY',
          'sink.delivery-guarantee' = 'exactly-once',
          'sink.transactional-id-prefix' = '{transactional_id_prefix}',
          'properties.transaction.timeout.ms' = '900000'
        )""")
    result = t_env.from_data_stream(rows)
    if len(topics) == 1:
        result = result.select(col("k"), col("v"))
    return result.execute_insert(table)
