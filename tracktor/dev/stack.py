"""The embedded broker's lifetime and address (kafka.bootstrap_servers: embedded)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from tracktor.config import EMBEDDED, Config
from tracktor.dev.kafka_local import LocalKafka, LocalKafkaCluster, free_port


def broker_dir(cfg: Config) -> Path:
    return cfg.data_dir / "kafka"


def _state_file(cfg: Config) -> Path:
    return broker_dir(cfg) / "broker.json"


def _nodes(cfg: Config) -> list[dict]:
    """[{pid, port}, ...] of the embedded broker's nodes that `kafka start` left (one, or a
    cluster's), as broker.json has them."""
    try:
        state = json.loads(_state_file(cfg).read_text())
    except (FileNotFoundError, ValueError):
        return []
    return state.get("nodes") or ([state] if "pid" in state else [])


def _alive(node: dict) -> bool:
    try:
        os.kill(node["pid"], 0)
    except (KeyError, ProcessLookupError, PermissionError):
        return False
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", node["port"])) == 0


def running_embedded(cfg: Config) -> str | None:
    """The address of the embedded broker `kafka start` left running, if it still runs (for
    a cluster: if every node does)."""
    nodes = _nodes(cfg)
    if not nodes or not all(_alive(n) for n in nodes):
        return None
    return ",".join(f"127.0.0.1:{n['port']}" for n in nodes)


def embedded_state(cfg: Config) -> tuple[int, int]:
    """(nodes serving, nodes started) of the embedded broker."""
    nodes = _nodes(cfg)
    return sum(_alive(n) for n in nodes), len(nodes)


def resolve_bootstrap(cfg: Config) -> str:
    """kafka.bootstrap_servers, with 'embedded' replaced by the running embedded broker."""
    configured = cfg.kafka.bootstrap_servers
    if configured != EMBEDDED:
        return configured
    address = running_embedded(cfg)
    if address is None:
        raise RuntimeError("the embedded Kafka broker is not running: start it with `bin/tracktor kafka start`")
    return address


def start_embedded(cfg: Config, brokers: int | None = None) -> str:
    """Start the embedded broker in the background (it outlives this process): one node, or
    a cluster of `brokers` nodes (tracktor/dev/kafka_local.py); by default the kind started
    last. Of a cluster, only the nodes that do not run are started. Returns its address. The
    ports and the cluster's id are kept from the first start: KRaft remembers them."""
    directory = broker_dir(cfg)
    directory.mkdir(parents=True, exist_ok=True)
    ports = directory / "ports.json"
    saved = json.loads(ports.read_text()) if ports.exists() else {}
    known = saved.get("cluster")
    brokers = brokers or saved.get("brokers") or 1
    nodes = _nodes(cfg)
    if nodes and any(_alive(n) for n in nodes) and len(nodes) != brokers:
        raise RuntimeError(f"the embedded broker runs with {len(nodes)} node(s), not {brokers}: "
                           "`bin/tracktor kafka stop` it first")
    address = running_embedded(cfg)
    if address:
        return address
    if brokers == 1:
        node = LocalKafka(directory, port=saved.get("port") or free_port(),
                          controller_port=saved.get("controller_port") or free_port())
        ports.write_text(json.dumps({**saved, "brokers": 1, "port": node.port, "controller_port": node.controller_port}))
        node.start()
        started = [node]
    else:
        if known and len(known["ports"]) != brokers:
            raise RuntimeError(f"the embedded cluster in {directory / 'cluster'} has {len(known['ports'])} nodes, not "
                               f"{brokers}: start it with --brokers {len(known['ports'])}, or delete that folder")
        cluster = LocalKafkaCluster(directory / "cluster", brokers,
                                    ports=[tuple(p) for p in known["ports"]] if known else None,
                                    cluster_id=known["cluster_id"] if known else None)
        ports.write_text(json.dumps({**saved, "brokers": brokers,
                                     "cluster": {"ports": cluster.ports, "cluster_id": cluster.cluster_id}}))
        alive = {n["port"]: n for n in nodes if _alive(n)}
        for node in cluster.nodes:  # nodes still running are left alone
            if node.port in alive:
                node.process = _Running(alive[node.port]["pid"])
        cluster.start()
        started = cluster.nodes
    _state_file(cfg).write_text(json.dumps({"nodes": [{"pid": n.process.pid, "port": n.port} for n in started]}))
    return ",".join(n.bootstrap_servers for n in started)


class _Running:
    """A node process that an earlier `kafka start` left running (not this process's child)."""

    def __init__(self, pid: int):
        self.pid = pid

    def poll(self):
        return None if _signal(self.pid, 0) else 0

    def wait(self, timeout: float | None = None):
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.1)
        return 0


def stop_embedded(cfg: Config) -> bool:
    """Stop the background broker (every node at once; SIGKILL to a node still running after
    30 s, and wait for it); False when none was running."""
    nodes = [n for n in _nodes(cfg) if _signal(n["pid"], signal.SIGTERM)]
    deadline = time.monotonic() + 30
    for node in nodes:
        while _signal(node["pid"], 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _signal(node["pid"], signal.SIGKILL):  # and its port is free again before this returns
            for _ in range(100):
                if not _signal(node["pid"], 0):
                    break
                time.sleep(0.1)
    _state_file(cfg).unlink(missing_ok=True)
    return bool(nodes)


def _signal(pid: int, sig: int) -> bool:
    """Send `sig` to the process group `pid` leads (to the process alone for 0); False when
    it is gone."""
    try:
        os.kill(pid, 0) if sig == 0 else os.killpg(pid, sig)
        return True
    except ProcessLookupError:
        return False


@contextmanager
def kafka_for(cfg: Config, scratch_dir: Path):
    """The configured broker; for 'embedded' with none running, a broker for this block only."""
    if cfg.kafka.bootstrap_servers != EMBEDDED or running_embedded(cfg):
        yield resolve_bootstrap(cfg)
        return
    with LocalKafka(scratch_dir) as broker:
        yield broker.bootstrap_servers
