"""`collector.workers` collector processes serving one port.

A collector is one Python thread; on a machine with more cores, more processes serve more
calls. This process runs the first collector, which binds the port (resolving port 0), and
spawns the others, which bind the same port with SO_REUSEPORT: the kernel spreads new
connections among them. Each has its own event loop and Kafka producer, so nothing is shared
but the port. Children ignore SIGINT (a terminal's Ctrl-C reaches the whole process group)
and stop, flushing what Kafka has not acknowledged, when the parent stops them or is gone.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading

from tracktor.collector.server import Collector
from tracktor.config import Config

START_TIMEOUT_S = 60


class CollectorProcesses:
    def __init__(self, cfg: Config, bootstrap_servers: str, workers: int | None = None,
                 host: str | None = None, port: int | None = None):
        self.cfg, self.bootstrap_servers = cfg, bootstrap_servers
        self.workers = cfg.collector.workers if workers is None else workers
        self.first = Collector(cfg, bootstrap_servers, host, port, reuse_port=self.workers > 1)
        self.children: list[multiprocessing.Process] = []

    @property
    def address(self) -> str:
        return self.first.address

    def start(self) -> "CollectorProcesses":
        self.first.start()
        host, port = self.first.sock.getsockname()[:2]
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads running
        pipes = []
        for _ in range(self.workers - 1):
            ours, theirs = ctx.Pipe()
            child = ctx.Process(target=_serve_child, args=(self.cfg, self.bootstrap_servers, host, port, theirs),
                                name="tracktor-collector", daemon=True)
            child.start()
            theirs.close()  # so that a child that dies shows as the end of its pipe
            self.children.append(child)
            pipes.append(ours)
        for child, pipe in zip(self.children, pipes):
            try:
                error = pipe.recv() if pipe.poll(START_TIMEOUT_S) else f"not ready after {START_TIMEOUT_S} s"
            except EOFError:
                error = f"it exited with code {child.exitcode}" if child.join(5) is None else "it exited"
            if error:
                self.stop()
                raise RuntimeError(f"collector process {child.pid} did not start: {error}")
        return self

    def stop(self) -> None:
        for child in self.children:
            if child.is_alive():
                child.terminate()
        self.first.stop()
        for child in self.children:
            child.join(15)
        self.children = []


def _serve_child(cfg: Config, bootstrap_servers: str, host: str, port: int, pipe) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        collector = Collector(cfg, bootstrap_servers, host, port, reuse_port=True).start()
    except Exception as e:  # told to the parent, which fails its start with it
        pipe.send(f"{type(e).__name__}: {e}")
        return
    pipe.send(None)
    parent = os.getppid()
    while not stop.wait(1) and os.getppid() == parent:
        pass
    collector.stop()
