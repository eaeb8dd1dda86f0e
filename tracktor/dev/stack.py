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
from tracktor.dev.kafka_local import LocalKafka, free_port



def broker_dir(cfg: Config) -> Path:
    return cfg.data_dir / "kafka"


def _state_file(cfg: Config) -> Path:
    return broker_dir(cfg) / "broker.json"


def running_embedded(cfg: Config) -> str | None:
    """The address of the embedded broker `kafka start` left running, if it still runs."""
    try:
        state = json.loads(_state_file(cfg).read_text())
        os.kill(state["pid"], 0)
    except (FileNotFoundError, ValueError, KeyError, ProcessLookupError, PermissionError):
        return None
    with socket.socket() as s:
        s.settimeout(1)
        if s.connect_ex(("127.0.0.1", state["port"])) != 0:
            return None
    return f"127.0.0.1:{state['port']}"


def resolve_bootstrap(cfg: Config) -> str:
    """kafka.bootstrap_servers, with 'embedded' replaced by the running embedded broker."""
    configured = cfg.kafka.bootstrap_servers
    if configured != EMBEDDED:
        return configured
    address = running_embedded(cfg)
    if address is None:
        raise RuntimeError("the embedded Kafka broker is not running: start it with `bin/tracktor kafka start`")
    return address


def start_embedded(cfg: Config) -> str:
    """Start the embedded broker in the background (it outlives this process); returns its address."""
    address = running_embedded(cfg)
    if address:
        return address
    directory = broker_dir(cfg)
    directory.mkdir(parents=True, exist_ok=True)
    ports = directory / "ports.json"  # KRaft remembers its controller address: keep the ports
    saved = json.loads(ports.read_text()) if ports.exists() else {}
    broker = LocalKafka(directory, port=saved.get("port") or free_port(),
                        controller_port=saved.get("controller_port") or free_port())
    broker.start()
    ports.write_text(json.dumps({"port": broker.port, "controller_port": broker.controller_port}))
    _state_file(cfg).write_text(json.dumps({"pid": broker.process.pid, "port": broker.port}))
    return broker.bootstrap_servers


def stop_embedded(cfg: Config) -> bool:
    """Stop the background broker; False when none was running."""
    try:
        state = json.loads(_state_file(cfg).read_text())
    except (FileNotFoundError, ValueError):
        return False
    try:
        os.killpg(state["pid"], signal.SIGTERM)
    except ProcessLookupError:
        _state_file(cfg).unlink(missing_ok=True)
        return False
    for _ in range(300):
        try:
            os.kill(state["pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(state["pid"], signal.SIGKILL)
    _state_file(cfg).unlink(missing_ok=True)
    return True


@contextmanager
def kafka_for(cfg: Config, scratch_dir: Path):
    """The configured broker; for 'embedded' with none running, a broker for this block only."""
    if cfg.kafka.bootstrap_servers != EMBEDDED or running_embedded(cfg):
        yield resolve_bootstrap(cfg)
        return
    with LocalKafka(scratch_dir) as broker:
        yield broker.bootstrap_servers
