"""Tracktor's topics on a Kafka cluster: creating the missing ones and reading their sizes.

The list of topics is `kafka.topics` in the config (tracktor/config/settings.py, Topics);
tests/test_schemas.py keeps it and schemas/ in step.
"""
from __future__ import annotations

from tracktor.config.settings import KafkaSettings

# Every record's timestamp is its log time (the collector's receive time), so a replay of
# old data carries old timestamps: time-based retention would delete it at once. Topics
# Tracktor creates keep their records (the raw topic is what a replay reads); set a
# retention on the cluster when you want one.
TOPIC_CONFIG = {"retention.ms": "-1", "message.timestamp.type": "CreateTime"}


def ensure_topics(bootstrap_servers: str, kafka: KafkaSettings, names: list[str] | None = None,
                  partitions: int | None = None) -> list[str]:
    """Create the missing topics (all of kafka.topics, or `names`) with kafka.partitions
    partitions (or `partitions`) and kafka.replication_factor replicas (unset: the
    cluster's default); returns the names created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = set(names or kafka.topics.by_role().values())
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        created = []
        for name in sorted(wanted - set(admin.list_topics())):
            try:
                replicas = kafka.replication_factor or -1  # -1: the cluster's default.replication.factor
                admin.create_topics([NewTopic(name, partitions or kafka.partitions, replicas,
                                              topic_configs=TOPIC_CONFIG)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def delete_topics(bootstrap_servers: str, names: list[str]) -> None:
    """Delete the topics `names` (a replay's own, once it is over)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})  # kept until the deletions are done
    for done in admin.delete_topics(names, operation_timeout=30).values():
        done.result(60)


def partition_counts(bootstrap_servers: str, names: list[str]) -> dict[str, int]:
    """{topic: number of partitions} for existing topics."""
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": bootstrap_servers}).list_topics(timeout=30)
    missing = [n for n in names if n not in metadata.topics or not metadata.topics[n].partitions]
    if missing:
        raise RuntimeError(f"topics {', '.join(missing)} do not exist on {bootstrap_servers}: run `bin/tracktor topics`")
    return {n: len(metadata.topics[n].partitions) for n in names}


def _next_offsets(consumer, name: str, partitions) -> dict[int, int] | None:
    """Per partition, the offset after its last committed record (0 when it has none): what a
    consumer that read everything has committed (transaction markers take offsets too, so the
    high watermark is not it). All partitions are read at once, each from its last 64 offsets
    to its end (the consumer says so: enable.partition.eof); None when an end was not reached
    in time (then nobody can say the topic was read to its end)."""
    from confluent_kafka import KafkaError, TopicPartition

    out, start = {}, []
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=30)
        out[p] = 0
        if high > low:
            start.append(TopicPartition(name, p, max(low, high - 64)))
    pending = {tp.partition for tp in start}
    consumer.assign(start)
    while pending:
        msg = consumer.poll(5)
        if msg is None:
            consumer.unassign()
            return None
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                pending.discard(msg.partition())
            continue
        out[msg.partition()] = msg.offset() + 1
    consumer.unassign()
    return out


def caught_up(bootstrap_servers: str, groups: dict[str, str]) -> bool:
    """Whether each consumer group of {topic: group} has committed every record of its topic."""
    return all(behind == 0 for behind in lag(bootstrap_servers, groups).values())


def lag(bootstrap_servers: str, groups: dict[str, str]) -> dict[str, int | None]:
    """{topic: how many of its records the group of {topic: group} has not committed yet}, the
    offsets transaction markers take left out; None when the topic's end could not be read."""
    from confluent_kafka import Consumer, TopicPartition

    reader = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "tracktor-caught-up",
                       "enable.auto.commit": False, "isolation.level": "read_committed", "enable.partition.eof": True,
                       "fetch.wait.max.ms": 20})
    out = {}
    try:
        metadata = reader.list_topics(timeout=30)
        for name, group in groups.items():
            ends = _next_offsets(reader, name, metadata.topics[name].partitions)
            if ends is None:
                out[name] = None
                continue
            committer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group, "enable.auto.commit": False})
            try:
                committed = _committed(committer, [TopicPartition(name, p) for p in ends])
            finally:
                committer.close()
            out[name] = sum(max(0, ends[tp.partition] - max(tp.offset, 0)) for tp in committed)
        return out
    finally:
        reader.close()


COORDINATOR_WAIT_S = 30.0  # how long a lag check waits for a group's coordinator (it moves, or loads, at times)


def _committed(consumer, partitions):
    """The group's committed offsets of `partitions`, asked again while its coordinator is
    moving or loading (NOT_COORDINATOR and the like: retriable, and seen after a broker's start)."""
    import time

    from confluent_kafka import KafkaError, KafkaException

    moving = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE}
    deadline = time.monotonic() + COORDINATOR_WAIT_S
    while True:
        try:
            return consumer.committed(partitions, timeout=30)
        except KafkaException as e:
            error = e.args[0] if e.args and isinstance(e.args[0], KafkaError) else None
            if error is None or not (error.code() in moving or error.retriable()) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
