"""A single-node Kafka broker (KRaft, combined broker+controller) run from the Maven-fetched jars.

Used by `tracktor kafka start` and by the pytest fixtures. It binds 127.0.0.1 on free ports,
so it can run beside any other broker, and it stops the whole process tree it started.
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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _classpath() -> str:
    jars = sorted((JARS_DIR / "kafka").glob("*.jar"))
    if not jars:
        raise RuntimeError(f"no Kafka jars in {JARS_DIR / 'kafka'}: run `bin/tracktor setup` first")
    return os.pathsep.join(str(j) for j in jars)


@dataclass
class LocalKafka:
    """One broker process. `start()` returns when it accepts connections."""

    data_dir: Path
    port: int = 0
    controller_port: int = 0
    process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Flink's exactly-once sink asks for 1 h transactions; allow them.
            "transaction.max.timeout.ms": "3600000",
            "num.partitions": "1",
            # Record timestamps are log times, often old in replays and tests: no time-based
            # deletion (topics Tracktor creates say so too, tracktor/topics.py).
            "log.retention.ms": "-1",
            "auto.create.topics.enable": "false",
        }
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.data_dir / "log4j2.xml").write_text(LOG4J2.format(log=self.data_dir / "kafka.log"))
        return path

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java", "-Xms256m", "-Xmx1g", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.xml'}",
            "-cp", _classpath(), main, *args,
        ]

    def start(self, timeout: float = 60.0) -> "LocalKafka":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = uuid.uuid4().hex[:22]
            subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), "--standalone"),
                check=True, capture_output=True, text=True,
            )
        out = open(self.data_dir / "stdout.log", "ab")
        self.process = subprocess.Popen(
            self._java("kafka.Kafka", str(props)), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        (self.data_dir / "pid").write_text(str(self.process.pid))
        self._wait_until_serving(timeout)
        return self

    def _wait_until_serving(self, timeout: float) -> None:
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
