"""A job's build stays on one Java thread while another Python thread collects garbage
(tracktor.flink.environment.one_java_thread): without it, a Java object's finalizer run by
the other thread's collection took the builder's py4j connection, the build went on on a
fresh Java thread, and the table planner failed there (NullPointerException
"metadataHandlerProvider"). Negative control: with `contextlib.nullcontext()` in place of
`one_java_thread()` this test fails, on the first build."""
from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import make_config
from tracktor.flink import kafka
from tracktor.flink.environment import jvm, one_java_thread, stream_env

pytestmark = pytest.mark.integration


def garbage() -> None:
    """Java objects in reference cycles: only a collection frees them (and runs their finalizers)."""
    for _ in range(50):
        cycle = [jvm().java.lang.StringBuilder()]
        cycle.append(cycle)


def build(cfg, i: int) -> set[int]:
    """What runner.run builds before a job's own graph, a source of each kind (planned, not
    run: nothing listens at the broker's address); the Java threads its calls ran on."""
    env, t_env = stream_env(cfg.flink, f"one-thread-{i}")
    threads = set()
    for n, clock in enumerate((None, kafka.RECORDS, kafka.HEARTBEATS)):
        threads.add(jvm().java.lang.Thread.currentThread().getId())
        kafka.source(t_env, f"t{i}_{n}", "127.0.0.1:9", "unread", "g", True, cfg.flink, clock=clock)
        garbage()
    return threads


def test_a_build_keeps_to_one_java_thread_while_another_thread_collects(tmp_path):
    cfg = make_config(tmp_path, "onethread")
    stop = threading.Event()

    def collecting() -> None:  # allocates cycles, so the automatic collection runs on this thread
        while not stop.is_set():
            for _ in range(100):
                cycle = []
                cycle.append(cycle)
            time.sleep(0.002)

    # The JVM starts before the other thread: started while it ran, thread-mode jobs run later
    # in this process failed ("No module named 'pemja'"; cause not found).
    stream_env(cfg.flink, "one-thread-start")
    other = threading.Thread(target=collecting, daemon=True)
    other.start()
    try:
        for i in range(5):
            garbage()  # left for the other thread's collections between builds
            with one_java_thread():
                assert len(build(cfg, i)) == 1
    finally:
        stop.set()
        other.join()
