"""Shared fixtures: named instants, the embedded Kafka broker, a configuration for tests."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tracktor import ROOT

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
    from tracktor.dev.kafka_local import LocalKafka
    broker = LocalKafka(tmp_path_factory.mktemp("kafka")).start()
    print(f"\n[kafka] using the embedded broker at {broker.bootstrap_servers} (no Docker engine needed)")
    yield broker.bootstrap_servers
    broker.stop()


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def browser():
    """Real headless Chromium (Debian's chromium, driven through its chromedriver by Selenium),
    one for the session; its console is kept (driver.get_log("browser"))."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (bin/tracktor test installs them when run as root)")
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="tracktor-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


class OtherOwner:
    """Another process owning the embedded warehouse of `clickhouse` (a DSN or a
    ClickHouseSettings) until stop() or kill(): this process's clients then go through its
    HTTP interface. `then` is code it runs with its client `c` before it waits."""

    def __init__(self, clickhouse, then: str = ""):
        settings = clickhouse if isinstance(clickhouse, str) else clickhouse.model_dump_json()
        script = ("import sys\nfrom tracktor import warehouse\nfrom tracktor.config.settings import ClickHouseSettings\n"
                  f"s = {settings!r}\nc = warehouse.connect(s if s.startswith('chdb:') else "
                  f"ClickHouseSettings.model_validate_json(s))\n{then}\n"
                  "print(type(c).__name__, flush=True)\nsys.stdin.read()\nc.close()\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYFLINK")}
        self.proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "OwnerClient", "the other process did not become the owner"

    def stop(self) -> None:
        """Close its client (a clean exit) and wait for it."""
        self.proc.stdin.close()
        assert self.proc.wait(60) == 0

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(60)


def make_config(tmp_path, prefix: str, bootstrap_servers: str = "embedded", sections: dict | None = None, **flink):
    """The shipped configuration with its own topics (prefixed), warehouse and checkpoints,
    so tests can share one broker without seeing each other's data, every job checkpointing
    every 2 s (the shipped per-job intervals left out); `flink` settings and
    other `sections` ({"identity": {...}}) are merged in, and written to the file too."""
    import copy

    import yaml

    from tracktor import config

    tree = copy.deepcopy(yaml.safe_load(config.DEFAULT_PATH.read_text()))
    tree["data_dir"] = str(tmp_path / "data")
    tree["kafka"]["bootstrap_servers"] = bootstrap_servers
    tree["kafka"]["partitions"] = 2
    defaults = config.Topics().by_role()
    tree["kafka"]["topics"] = {role: f"{prefix}.{name}" for role, name in {**defaults, **tree["kafka"]["topics"]}.items()}
    tree["clickhouse"]["dsn"] = f"chdb://{tmp_path / 'warehouse'}"
    tree["clickhouse"]["http"] = {"port": 0}  # tests beside each other (and a demo) each get a free port
    tree["flink"]["checkpoint_dir"] = str(tmp_path / "checkpoints")
    tree["flink"]["checkpoint_interval_ms"] = 2000
    tree["flink"]["jobs"] = {}  # every job at the interval given (the shipped file's own are for production)
    tree.setdefault("api", {})["request_timeout"] = 2
    tree["flink"].update(flink)
    for section, values in (sections or {}).items():
        tree.setdefault(section, {}).update(values)
    path = tmp_path / "tracktor.yaml"
    path.write_text(yaml.safe_dump(tree))
    return config.load(path)


HEARTBEAT = b"#hb:"  # clock records (tracktor/flink/kafka.py); read_topic leaves them out


def produce(bootstrap_servers: str, topic: str, key: str, record: dict, ts: int) -> None:
    """One JSON record into `topic`, with the log time `ts`."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap_servers})
    p.produce(topic, json.dumps(record).encode(), key.encode(), timestamp=ts)
    assert p.flush(10) == 0


def read_topic(bootstrap_servers: str, topic: str, timeout_ms: int = 60_000) -> list[tuple[str, dict]]:
    """Every record of a topic committed when the call starts, as (key, value; None for a
    tombstone), heartbeats left out: read up to the end offsets (the last stable ones,
    read_committed), not until the topic has been quiet for a while, which a loaded machine
    could mistake for the end."""
    return [(m.key.decode() if m.key else None, None if m.value is None else json.loads(m.value))
            for messages in read_partitions(bootstrap_servers, topic, timeout_ms).values() for m in messages
            if not (m.key or b"").startswith(HEARTBEAT)]


def read_partitions(bootstrap_servers: str, topic: str, timeout_ms: int = 60_000) -> dict[int, list]:
    """Every message of a topic committed when the call starts, heartbeats included, per
    partition in offset order (kafka-python's ConsumerRecords)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                             isolation_level="read_committed")
    deadline = time.monotonic() + timeout_ms / 1000
    try:
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"topic {topic} has no partitions"
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records = {tp: [] for tp in tps}
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout_ms} ms"
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records[tp] += [m for m in batch if m.offset < end[tp]]
        return {tp.partition: records[tp] for tp in tps}
    finally:
        consumer.close()


def run_jobs(cfg, bootstrap_servers: str, *names: str, bounded: bool = True) -> None:
    """Run the named jobs (all of jobs.NAMES by default) one after the other, bounded."""
    import jobs
    from tracktor.flink import runner

    for name in names or jobs.NAMES:
        runner.run(jobs.load(name), cfg, bootstrap_servers, bounded)


# -- jobs as processes of their own, as `bin/tracktor job NAME` runs them ----------------------
def clean_env() -> dict:
    """This process's environment without what PyFlink left in it after running a job here
    (PYFLINK_GATEWAY_DISABLED and friends would stop a child from starting its own JVM)."""
    return {k: v for k, v in os.environ.items() if "PYFLINK" not in k}


def cli(cfg, *args, **kw) -> subprocess.CompletedProcess:
    """`bin/tracktor --config <cfg's file> ARGS` as a process of its own; its output captured."""
    return subprocess.run([sys.executable, "-m", "tracktor.cli", "--config", str(cfg.path), *args],
                          cwd=ROOT, capture_output=True, text=True, env=clean_env(), **kw)


def start_job(cfg, name="identity_merge"):
    log = open(cfg.data_dir.parent / f"{name}.log", "ab")
    job = subprocess.Popen([sys.executable, "-m", "tracktor.cli", "--config", str(cfg.path), "job", name],
                           cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=clean_env(), start_new_session=True)
    job.log = Path(log.name)
    return job


def stop_job(job):
    if job.poll() is None:
        os.killpg(job.pid, signal.SIGKILL)  # no goodbye: as if the machine died
        job.wait(30)


def wait_for(what, check, job, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if job.poll() is not None:
            break
        time.sleep(2)
    tail = job.log.read_text(errors="replace")[-3000:]
    raise AssertionError(f"no {what} after {seconds}s (job exit code {job.poll()}); its log ends:\n{tail}")


def post_batch(base: str, app: str, calls: list[dict]) -> int:
    """POST /batch?sid=APP of `calls` to the collector at `base`; the HTTP status."""
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{base}/batch?sid={app}", data=json.dumps(calls).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
