"""Kafka for the jobs: a source per topic and one exactly-once sink for all a job writes.

What a source hands a job: Row(k, v, ts) — the record's key and value as text and its Kafka
timestamp in ms (every Tracktor topic's timestamp is the record's log time: the collector's
receive time, passed on by each job). What a job returns: Row(topic, k, v, ts).

Time (docs/architecture.md, "Time"): a topic that drives a job's event time carries
heartbeats, records keyed `#hb:N` that the writer of partition N puts there when its own
clock moves. A clock source takes its watermark from them, and leaves them out of what the
job sees:

- `RECORDS` (tracktor.raw, written by the collectors as calls arrive): every timestamp,
  heartbeats included, less the allowed disorder;
- `HEARTBEATS` (a topic a job writes its clock into: tracktor.events, tracktor.derived):
  the heartbeats alone. A job's records are not in time order beyond any fixed disorder (a
  bundle of one app's records may be written before an earlier bundle of another's, hours
  of log time apart in a replay), but a heartbeat comes after every record of its writer
  that its time covers. (tracktor.derived has writers without a clock too: docs/architecture.md.)
"""
from __future__ import annotations

from tracktor.config.settings import FlinkSettings
from tracktor.flink.environment import jvm

SOURCE_FIELDS = ["k", "v", "ts"]
OUTPUT_FIELDS = ["topic", "k", "v", "ts"]
HEARTBEAT_PREFIX = "#hb:"  # io.tracktor.flink.HeartbeatEmitter.KEY_PREFIX
RECORDS, HEARTBEATS = "records", "heartbeats"  # a clock source's watermark: from what


def source_type():
    from pyflink.common import Types
    return Types.ROW_NAMED(SOURCE_FIELDS, [Types.STRING(), Types.STRING(), Types.LONG()])


def output_type():
    from pyflink.common import Types
    return Types.ROW_NAMED(OUTPUT_FIELDS, [Types.STRING(), Types.STRING(), Types.STRING(), Types.LONG()])


def _ms(seconds: float) -> str:
    return f"{int(round(seconds * 1000))}"



def _table(t_env, table: str, bootstrap_servers: str, topics: list[str], columns: str, options: str) -> None:
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE `{table}` (
          {columns}
        ) WITH (
          'connector' = 'kafka',
          'topic' = '{";".join(topics)}',
          'properties.bootstrap.servers' = '{bootstrap_servers}',{options}
          'key.format' = 'raw',
          'key.fields' = 'k',
          'value.format' = 'raw',
          'value.fields-include' = 'EXCEPT_KEY'
        )""")


def source(t_env, table: str, bootstrap_servers: str, topic: str, group_id: str, bounded: bool,
           flink: FlinkSettings, clock: str | None):
    """A DataStream of Row(k, v, ts) from `topic`.

    Bounded: the whole topic, from the beginning to its end as it is at start (a replay).
    Unbounded: from the committed offsets of `group_id` (earliest when none), unless a
    restored checkpoint says where the job was. Only committed transactions are read.
    With `clock` (RECORDS or HEARTBEATS), records carry their timestamps and the stream its
    watermarks, per partition and the least of them (with `flink.idle_partition_timeout`, a
    partition quiet that long is left out until it has records again); without, neither.
    """
    from pyflink.common import Types
    from pyflink.datastream.data_stream import DataStream

    startup = "'scan.startup.mode' = 'earliest-offset'," if bounded else \
        "'scan.startup.mode' = 'group-offsets', 'properties.auto.offset.reset' = 'earliest',"
    until = "'scan.bounded.mode' = 'latest-offset'," if bounded else ""
    watermark = ""
    if clock == RECORDS:
        watermark = f",\n          WATERMARK FOR `kts` AS `kts` - INTERVAL '{flink.allowed_disorder:.3f}' SECOND(3)"
    elif clock == HEARTBEATS:  # a record's own time moves nothing: the epoch
        watermark = f""",
          `wts` AS CASE WHEN `k` LIKE '{HEARTBEAT_PREFIX}%' THEN `kts` ELSE TO_TIMESTAMP_LTZ(0, 3) END,
          WATERMARK FOR `wts` AS `wts`"""
    elif clock is not None:
        raise ValueError(f"clock must be {RECORDS!r}, {HEARTBEATS!r} or None, got {clock!r}")
    if clock:
        until += """
          'scan.watermark.emit.strategy' = 'on-event',"""
        if flink.idle_partition_timeout:
            until += f"""
          'scan.watermark.idle-timeout' = '{_ms(flink.idle_partition_timeout)}ms',"""
    _table(t_env, table, bootstrap_servers, [topic], f"""`k` STRING,
          `v` STRING,
          `kts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp'{watermark}""", f"""
          'properties.group.id' = '{group_id}',
          'properties.isolation.level' = 'read_committed',
          'scan.topic-partition-discovery.interval' = '10s',
          {startup}
          {until}""")
    rows = t_env.sql_query(f"SELECT k, v, kts FROM `{table}` WHERE k IS NULL OR k NOT LIKE '{HEARTBEAT_PREFIX}%'")
    # RowTypeInfo (to_data_stream gives ExternalTypeInfo, which PyFlink's keyed operators refuse)
    stream = t_env.to_append_stream(rows, Types.ROW_NAMED(["k", "v", "kts"], [Types.STRING(), Types.STRING(),
                                                                               Types.INSTANT()]))
    mapped = stream._j_data_stream.map(jvm().io.tracktor.flink.SourceRows(), source_type().get_java_type_info())
    return DataStream(mapped.name(f"{table} rows"))


def without_clock(stream):
    """`stream` taken out of the job's event time (io.tracktor.flink.NoClock): a topic that is
    often quiet must not hold back the watermark of the job's clock inputs."""
    from pyflink.datastream.data_stream import DataStream
    j = stream._j_data_stream
    return DataStream(j.transform("no clock", j.getType(), jvm().io.tracktor.flink.NoClock()))


def sink(t_env, rows, table: str, bootstrap_servers: str, topics: list[str], transactional_id_prefix: str,
         flink: FlinkSettings, clock_partitions: dict[str, int] | None = None):
    """Write a stream of Row(topic, k, v, ts) to `topics`, exactly once; returns the TableResult.

    `clock_partitions` ({topic: partitions}) get heartbeats (io.tracktor.flink.HeartbeatEmitter)
    as the watermark moves, at most every `flink.heartbeat_interval_ms`; keys are partitioned
    as Kafka does, and a heartbeat lands in the partition its key names
    (io.tracktor.flink.KeyPartitioner). Above parallelism 1 the rows go first to the subtask
    that owns their partition (io.tracktor.flink.PartitionOwner), so a heartbeat follows every
    record its time covers, whichever subtask made it. The Table API sink, not the DataStream KafkaSink:
    the key, topic and timestamp come from their own columns. With one topic the connector
    takes no topic column, so it is dropped.
    """
    from pyflink.datastream.data_stream import DataStream
    from pyflink.table.expressions import call, col

    if clock_partitions:
        names = list(clock_partitions)
        clock_topics, counts = _java_strings(names), _java_ints([clock_partitions[n] for n in names])
        j = rows._j_data_stream
        if j.getParallelism() > 1:  # each partition of a clock topic written by one subtask, whose
            owner = jvm().io.tracktor.flink.PartitionOwner(clock_topics, counts)  # clock is every subtask's least
            j = j.partitionCustom(owner, owner)
        emitter = jvm().io.tracktor.flink.HeartbeatEmitter(clock_topics, counts, flink.heartbeat_interval_ms)
        rows = DataStream(j.transform("heartbeats", j.getType(), emitter).setParallelism(j.getParallelism()))
    topic_column = "`topic` STRING METADATA," if len(topics) > 1 else ""
    _table(t_env, table, bootstrap_servers, topics, f"""{topic_column}
          `k` STRING,
          `v` STRING,
          `kts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp'""", f"""
          'sink.delivery-guarantee' = 'exactly-once',
          'sink.transactional-id-prefix' = '{transactional_id_prefix}',
          'sink.partitioner' = 'io.tracktor.flink.KeyPartitioner',
          'properties.transaction.timeout.ms' = '900000',""")
    fields = [col("k"), col("v"), call("TO_TIMESTAMP_LTZ", col("ts"), 3)]
    if len(topics) > 1:
        fields.insert(0, col("topic"))
    return t_env.from_data_stream(rows).select(*fields).execute_insert(table)


def _java_strings(values: list[str]):
    from pyflink.java_gateway import get_gateway
    gateway = get_gateway()
    array = gateway.new_array(gateway.jvm.java.lang.String, len(values))
    for i, v in enumerate(values):
        array[i] = v
    return array


def _java_ints(values: list[int]):
    from pyflink.java_gateway import get_gateway
    gateway = get_gateway()
    array = gateway.new_array(gateway.jvm.int, len(values))
    for i, v in enumerate(values):
        array[i] = v
    return array
