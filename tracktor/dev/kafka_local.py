"""Kafka brokers (KRaft, combined broker+controller) run from the Maven-fetched jars.

LocalKafka is one node: alone (the embedded broker of `tracktor kafka start` and the pytest
fixtures), or one of a LocalKafkaCluster's (`tracktor kafka start --brokers 3`): 3 or 5
nodes on loopback with one static controller quorum, whose topics are replicated to 3 nodes
by default (default.replication.factor; the internal topics too) with min.insync.replicas 2,
so a write acknowledged with acks=all survives the loss of one node.
Nodes bind 127.0.0.1 on free ports, so they run beside any other broker, and each stops the
whole process tree it started.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tracktor import JARS_DIR

LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="{log}"><PatternLayout pattern="[%d] %p %m (%c)%n"/></File>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
  </Loggers>
</Configuration>
"""


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports on 127.0.0.1 (each socket is held until all are chosen)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


CLUSTER_SIZES = (3, 5)  # a cluster's nodes: a quorum that survives the loss of one (or two)


def _classpath() -> str:
    jars = sorted((JARS_DIR / "kafka").glob("*.jar"))
    if not jars:
        raise RuntimeError(f"no Kafka jars in {JARS_DIR / 'kafka'}: run `bin/tracktor setup` first")
    return os.pathsep.join(str(j) for j in jars)


@dataclass
class LocalKafka:
    """One node. `start()` returns when it accepts connections. A node of a cluster has its
    `node_id`, the cluster's `voters` (node_id@host:controller_port, ...) and `cluster_id`,
    and `replicas`, the replication of the internal topics and of new topics."""

    data_dir: Path
    port: int = 0
    controller_port: int = 0
    process: subprocess.Popen | None = None
    node_id: int = 1
    voters: str | None = None
    cluster_id: str | None = None
    replicas: int = 1

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        isr = str(min(2, self.replicas))  # of 3 replicas: an acknowledged write is on 2 nodes
        quorum = ({"controller.quorum.voters": self.voters} if self.voters
                  else {"controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}"})
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            **quorum,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "offsets.topic.replication.factor": str(self.replicas),
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": str(self.replicas),
            "transaction.state.log.min.isr": isr,
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": str(self.replicas),
            "share.coordinator.state.topic.min.isr": isr,
            "default.replication.factor": str(self.replicas),
            "min.insync.replicas": isr,
            "group.initial.rebalance.delay.ms": "0",
            # Flink's exactly-once sink asks for 1 h transactions; allow them.
            "transaction.max.timeout.ms": "3600000",
            "num.partitions": "1",
            # Record timestamps are log times, often old in replays and tests: no time-based
            # deletion (topics Tracktor creates say so too, tracktor/topics.py).
            "log.retention.ms": "-1",
            "auto.create.topics.enable": "false",
        }
        if self.voters:
            # A node of a cluster that stops heartbeating is fenced (its partitions get new
            # leaders and it leaves their in-sync replicas) after 6 s, not Kafka's 9 s: the
            # writes it held up move on sooner, with room for a GC pause on busy cores.
            props.update({"broker.heartbeat.interval.ms": "1000", "broker.session.timeout.ms": "6000"})
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.data_dir / "log4j2.xml").write_text(LOG4J2.format(log=self.data_dir / "kafka.log"))
        return path

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            # C1 only, as the jobs' JVMs (flink.jvm_options): on a small machine the broker's
            # optimising compiler took 0.08 of a core for minutes after the start, and in a
            # short run the broker took fewer records/s with it than without (docs/performance.md).
            "java", "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.xml'}",
            "-cp", _classpath(), main, *args,
        ]

    def start(self, timeout: float = 60.0) -> "LocalKafka":
        self.launch()
        self.wait_until_serving(timeout)
        return self

    def launch(self) -> None:
        """Format the storage on the first start, and start the process (not waiting for it:
        a cluster's nodes serve only once a majority of its controllers runs)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            alone = [] if self.voters else ["--standalone"]
            subprocess.run(self._java("kafka.tools.StorageTool", "format", "-t", self.cluster_id or uuid.uuid4().hex[:22],
                                      "-c", str(props), *alone), check=True, capture_output=True, text=True)
        out = open(self.data_dir / "stdout.log", "ab")
        self.process = subprocess.Popen(
            self._java("kafka.Kafka", str(props)), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        (self.data_dir / "pid").write_text(str(self.process.pid))

    def wait_until_serving(self, timeout: float = 60.0) -> None:
        from kafka import KafkaAdminClient

        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Kafka exited with {self.process.returncode}; see {self.data_dir / 'kafka.log'}")
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=2000)
                admin.list_topics()
                admin.close()
                return
            except Exception as e:  # not serving yet
                last_error = e
                time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"Kafka did not serve within {timeout}s: {last_error}")

    def kill(self) -> None:
        """SIGKILL: the node dies at once, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        (self.data_dir / "pid").unlink(missing_ok=True)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        (self.data_dir / "pid").unlink(missing_ok=True)

    def __enter__(self) -> "LocalKafka":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LocalKafkaCluster:
    """`brokers` nodes in `data_dir`/node-N, each a broker and a voter of the controller
    quorum. Ports are chosen once (KRaft remembers the voters' addresses): pass `ports`,
    [(port, controller_port), ...], to start a cluster again on its data."""

    def __init__(self, data_dir: Path, brokers: int = 3, ports: list[tuple[int, int]] | None = None,
                 cluster_id: str | None = None):
        if brokers not in CLUSTER_SIZES:
            raise ValueError(f"a cluster has {' or '.join(map(str, CLUSTER_SIZES))} nodes, not {brokers}: with 2, the "
                             "loss of either stops every write (its quorum and min.insync.replicas need both)")
        ports = ports or list(zip(*[iter(free_ports(2 * brokers))] * 2))
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        self.cluster_id = cluster_id or uuid.uuid4().hex[:22]
        self.nodes = [LocalKafka(data_dir / f"node-{i + 1}", port=p, controller_port=c, node_id=i + 1, voters=voters,
                                 cluster_id=self.cluster_id, replicas=min(len(ports), 3))
                      for i, (p, c) in enumerate(ports)]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(n.bootstrap_servers for n in self.nodes)

    @property
    def ports(self) -> list[tuple[int, int]]:
        return [(n.port, n.controller_port) for n in self.nodes]

    def start(self, timeout: float = 90.0) -> "LocalKafkaCluster":
        """Start every node that does not run (all of them, the first time)."""
        down = [n for n in self.nodes if n.process is None or n.process.poll() is not None]
        try:
            for node in down:
                node.launch()
            for node in down:
                node.wait_until_serving(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to every node at once, then SIGKILL to those still running after `timeout`
        (the last nodes' controlled shutdown can wait for a quorum that has gone)."""
        running = [n for n in self.nodes if n.process is not None and n.process.poll() is None]
        for node in running:
            os.killpg(node.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in running:
            try:
                node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.kill()
            (node.data_dir / "pid").unlink(missing_ok=True)

    def __enter__(self) -> "LocalKafkaCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
