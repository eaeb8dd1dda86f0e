"""The command line on real processes: the background broker and an unbounded job."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import make_config, read_topic
from tracktor import ROOT, stack

pytestmark = pytest.mark.integration


def cli(cfg, *args, **kw):
    return subprocess.run([sys.executable, "-m", "tracktor.cli", "--config", str(cfg.path), *args],
                          cwd=ROOT, capture_output=True, text=True, **kw)


def test_kafka_start_status_stop_leaves_no_process(tmp_path):
    cfg = make_config(tmp_path, "cli-kafka")
    try:
        started = cli(cfg, "kafka", "start", timeout=120)
        assert started.returncode == 0, started.stderr
        address = re.search(r"embedded Kafka at (127\.0\.0\.1:\d+)", started.stdout).group(1)
        assert "created" in started.stdout
        status = cli(cfg, "kafka", "status")
        assert status.returncode == 0 and address in status.stdout
        pid = int((stack.broker_dir(cfg) / "pid").read_text())
        again = cli(cfg, "kafka", "start", timeout=60)  # a second start reuses the running broker
        assert f"embedded Kafka at {address}" in again.stdout and "created" not in again.stdout
        assert cli(cfg, "kafka", "stop", timeout=60).stdout.strip() == "stopped"
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert cli(cfg, "kafka", "status").returncode == 1
    finally:
        stack.stop_embedded(cfg)


def test_a_job_without_a_broker_says_how_to_start_one(tmp_path):
    cfg = make_config(tmp_path, "cli-nobroker")
    out = cli(cfg, "job", "identity_merge", timeout=60)
    assert out.returncode == 2 and "bin/tracktor kafka start" in out.stderr


def test_an_unbounded_job_keeps_consuming_what_arrives_after_it_started(kafka, tmp_path):
    cfg = make_config(tmp_path, "cli-job", bootstrap_servers=kafka)
    assert cli(cfg, "load", "--people", "5", "--seed", "3", timeout=60).returncode == 0
    job = subprocess.Popen([sys.executable, "-m", "tracktor.cli", "--config", str(cfg.path), "job", "identity_merge"],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def events():
            return {v["event_id"] for _, v in read_topic(kafka, cfg.topics["events"], timeout_ms=1000)}

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not events():
            time.sleep(2)
        first = events()
        assert first, "the job produced no events within 2 minutes"
        # more data while it runs: it is consumed without a restart
        assert cli(cfg, "load", "--people", "10", "--seed", "4", timeout=60).returncode == 0
        while time.monotonic() < deadline and len(events()) <= len(first):
            time.sleep(2)
        assert len(events()) > len(first)
        assert job.poll() is None  # still running: unbounded
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(30)
