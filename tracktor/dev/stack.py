"""The embedded broker's lifetime and address (kafka.bootstrap_servers: embedded)."""
from __future__ import annotations

import json
import os
import signal
import socket
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
    """The address of the embedded broker `kafka start` left running (its nodes that serve,
    for a cluster), if it still runs."""
    serving = [f"127.0.0.1:{n['port']}" for n in _nodes(cfg) if _alive(n)]
    return ",".join(serving) or None


def resolve_bootstrap(cfg: Config) -> str:
    """kafka.bootstrap_servers, with 'embedded' replaced by the running embedded broker."""
    configured = cfg.kafka.bootstrap_servers
    if configured != EMBEDDED:
        return configured
    address = running_embedded(cfg)
    if address is None:
        raise RuntimeError("the embedded Kafka broker is not running: start it with `bin/tracktor kafka start`")
    return address


def start_embedded(cfg: Config, brokers: int = 1) -> str:
    """Start the embedded broker in the background (it outlives this process): one node, or
    a cluster of `brokers` nodes (tracktor/dev/kafka_local.py); returns its address. The
    ports are kept, since KRaft remembers its controllers' addresses."""
    address = running_embedded(cfg)
    if address:
        return address
    directory = broker_dir(cfg)
    directory.mkdir(parents=True, exist_ok=True)
    ports = directory / "ports.json"
    saved = json.loads(ports.read_text()) if ports.exists() else {}
    if brokers == 1:
        node = LocalKafka(directory, port=saved.get("port") or free_port(),
                          controller_port=saved.get("controller_port") or free_port())
        node.start()
        ports.write_text(json.dumps({**saved, "port": node.port, "controller_port": node.controller_port}))
        nodes = [node]
    else:
        known = saved.get("cluster")
        if known and len(known["ports"]) != brokers:
            raise RuntimeError(f"the embedded cluster in {directory / 'cluster'} has {len(known['ports'])} nodes, not "
                               f"{brokers}: start it with --brokers {len(known['ports'])}, or delete that folder")
        cluster = LocalKafkaCluster(directory / "cluster", brokers,
                                    ports=[tuple(p) for p in known["ports"]] if known else None,
                                    cluster_id=known["cluster_id"] if known else None).start()
        ports.write_text(json.dumps({**saved, "cluster": {"ports": cluster.ports, "cluster_id": cluster.cluster_id}}))
        nodes = cluster.nodes
    _state_file(cfg).write_text(json.dumps({"nodes": [{"pid": n.process.pid, "port": n.port} for n in nodes]}))
    return ",".join(n.bootstrap_servers for n in nodes)


def stop_embedded(cfg: Config) -> bool:
    """Stop the background broker (every node); False when none was running."""
    nodes = [n for n in _nodes(cfg) if _signal(n["pid"], signal.SIGTERM)]
    for node in nodes:
        for _ in range(300):
            if not _signal(node["pid"], 0):
                break
            time.sleep(0.1)
        else:
            _signal(node["pid"], signal.SIGKILL)
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
