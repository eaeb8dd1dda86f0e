"""A three-node Kafka cluster on loopback (KRaft, every topic replicated three times with
min.insync.replicas 2), as `bin/tracktor kafka start --brokers 3` runs it: one node is
killed under load (the leader of the partition the calls go to) and started again 16 s
later; the collector keeps serving with the node down, and no call it acknowledged is lost
or doubled."""
from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from tests.conftest import make_config, post_batch as post, read_topic
from tracktor.collector.server import Collector
from tracktor.dev.kafka_local import LocalKafkaCluster
from tracktor.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.faults]
LOAD_S = 32          # calls arrive over this long
KILL_AT_S = 6        # when a node is killed
DOWN_S = 16          # how long it stays down
RECOVERY_S = 10      # from this long after the kill on, every request is accepted (the node fenced: 6 s)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalKafkaCluster(tmp_path_factory.mktemp("kafka-cluster"), brokers=3) as c:
        yield c


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """{partition: the node leading it}."""
    from confluent_kafka.admin import AdminClient
    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=30)
    return {p: info.leader for p, info in meta.topics[topic].partitions.items()}


def in_sync(bootstrap: str, topic: str) -> set[int]:
    """The number of in-sync replicas of each partition."""
    from confluent_kafka.admin import AdminClient
    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=30)
    return {len(info.isrs) for info in meta.topics[topic].partitions.values()}


def wait_in_sync(bootstrap: str, topic: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while in_sync(bootstrap, topic) != {3}:
        assert time.monotonic() < deadline, f"{topic}'s partitions are not all on 3 in-sync replicas"
        time.sleep(1)


def written_partition(bootstrap: str, topic: str) -> int:
    """The partition the calls go to (one app's calls share one: raw is keyed by app)."""
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        ends = consumer.end_offsets(tps)
        return max(tps, key=lambda tp: ends[tp]).partition
    finally:
        consumer.close()


def test_a_node_killed_under_load_loses_no_acknowledged_call_and_the_collector_keeps_serving(cluster, tmp_path):
    bs = cluster.bootstrap_servers
    cfg = make_config(tmp_path, "cluster", bs).updated(kafka={"replication_factor": 3})
    ensure_topics(bs, cfg.kafka, names=[cfg.topics["raw"]], partitions=4)
    wait_in_sync(bs, cfg.topics["raw"])
    collector = Collector(cfg, bs, port=0).start()
    answers: list[tuple[float, int]] = []   # (seconds since the start, status) per request
    acknowledged: Counter = Counter()      # call ids the collector answered 200 for
    start = time.monotonic()

    def load():
        i = 0
        while time.monotonic() - start < LOAD_S:
            ids = [f"c{i}-{j}" for j in range(20)]
            calls = [{"method": "track", "ts": 1767225600 + i, "id": cid, "action": "Site visit"} for cid in ids]
            status = post(collector.address, "demo-video", calls)
            answers.append((time.monotonic() - start, status))
            if status == 200:
                acknowledged.update(ids)
            i += 1

    sender = threading.Thread(target=load)
    sender.start()
    try:
        time.sleep(KILL_AT_S)
        victim = cluster.nodes[leaders(bs, cfg.topics["raw"])[written_partition(bs, cfg.topics["raw"])] - 1]
        victim.kill()  # the leader of the partition the calls go to
        killed_at = time.monotonic() - start
        time.sleep(DOWN_S)
        back_at = time.monotonic() - start
        victim.start()
        sender.join()
    finally:
        collector.stop()

    statuses = Counter(s for _, s in answers)
    assert set(statuses) <= {200, 503}, statuses          # a client's retry signal, never a dropped request
    late = [(at, s) for at, s in answers if at > killed_at + RECOVERY_S]
    assert late and all(s == 200 for _, s in late), f"still refusing {RECOVERY_S}s after the kill: {statuses}"
    down = [s for at, s in answers if killed_at + RECOVERY_S < at < back_at]
    assert len(down) > 10 and set(down) == {200}, "not served on while the node was down"
    got = Counter(env["id"] for _, env in read_topic(bs, cfg.topics["raw"]))
    assert acknowledged and not acknowledged - got, "acknowledged calls are missing"
    assert all(got[cid] == 1 for cid in acknowledged), "an acknowledged call was written twice"
    wait_in_sync(bs, cfg.topics["raw"])  # the node that came back catches up
