"""Shared fixtures: named instants, the embedded Kafka broker, a configuration for tests."""
from __future__ import annotations

import os
import shutil

import pytest

# Named instants (ms since the epoch), as in flink-training's tests.
BEGINNING = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ONE_SECOND = 1_000
ONE_MINUTE = 60 * ONE_SECOND
ONE_HOUR = 60 * ONE_MINUTE
ONE_DAY = 24 * ONE_HOUR


def docker_engine_available() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        import docker
        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """A real broker for the whole session: the embedded one, or a container where Docker runs.

    TRACKTOR_TEST_KAFKA=host:port uses a broker that is already running instead.
    """
    if os.environ.get("TRACKTOR_TEST_KAFKA"):
        print(f"\n[kafka] using the broker at {os.environ['TRACKTOR_TEST_KAFKA']}")
        yield os.environ["TRACKTOR_TEST_KAFKA"]
        return
    if docker_engine_available() and os.environ.get("TRACKTOR_TEST_DOCKER") == "1":
        from testcontainers.kafka import KafkaContainer
        with KafkaContainer() as container:
            print("\n[kafka] using a testcontainers broker")
            yield container.get_bootstrap_server()
        return
    from tracktor.kafka_local import LocalKafka
    broker = LocalKafka(tmp_path_factory.mktemp("kafka")).start()
    print(f"\n[kafka] using the embedded broker at {broker.bootstrap_servers} (no Docker engine needed)")
    yield broker.bootstrap_servers
    broker.stop()
