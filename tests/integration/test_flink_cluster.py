"""A Flink standalone session cluster on loopback (one JobManager, two TaskManagers, each a
process of its own; tracktor/dev/flink_cluster.py): identity_merge submitted with
`flink run --python`, the TaskManager running it SIGKILLed mid-stream. The job recovers on
the other TaskManager from its last checkpoint, and its outputs are those of an
uninterrupted run of the same input, record by record per key."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

import jobs
from tests.conftest import make_config, read_topic, run_jobs
from tests.integration.test_faults import ORDERED, FEED_S, calls, config, feed
from tracktor.dev.flink_cluster import LocalFlinkCluster, cluster_dir, stop_background
from tracktor.dev import loader
from tracktor.topics import ensure_topics, lag

pytestmark = [pytest.mark.integration, pytest.mark.faults]
JOB = "identity_merge"


def outputs(kafka, cfg) -> dict:
    out = {}
    for role in ORDERED:
        per_key: dict = {}
        for k, v in read_topic(kafka, cfg.topics[role]):
            per_key.setdefault(k, []).append(v)
        out[role] = per_key
    return out


def spread(kafka, cfg, envs: list[dict], seconds: float) -> None:
    """The calls into tracktor.raw in six parts over `seconds` (feed() without its closing
    heartbeat), the last part sent last: a kill right after falls while the job works on it."""
    step = -(-len(envs) // 6)
    for i in range(0, len(envs), step):
        time.sleep(seconds / 6)
        loader.send(kafka, cfg.topics["raw"], envs[i:i + step], label="calls")


@pytest.fixture(scope="module")
def recovered(kafka, tmp_path_factory):
    envs = calls()
    ref = config(tmp_path_factory, kafka, "cluster-ref")
    feed(kafka, ref, envs)
    run_jobs(ref, kafka, JOB)
    expected = outputs(kafka, ref)

    # process mode: in thread mode PyFlink builds a state TTL config with the client's JVM
    # gateway, which a TaskManager does not have (README, "On a cluster")
    cfg = make_config(tmp_path_factory.mktemp("cluster-live"), "cluster-live", kafka, checkpoint_interval_ms=1000,
                      execution_mode="process")
    ensure_topics(kafka, cfg.kafka)
    with LocalFlinkCluster(tmp_path_factory.mktemp("flink-cluster"), taskmanagers=2) as cluster:
        client = cluster.submit(JOB, cfg.path, cfg.data_dir.parent / "client.log")
        try:
            deadline = time.monotonic() + 180
            while cluster.busy_taskmanager() is None:  # the job is deployed
                assert client.poll() is None, (cfg.data_dir.parent / "client.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the job did not start on the cluster"
                time.sleep(1)
            half = len(envs) // 2
            spread(kafka, cfg, envs[:half], FEED_S / 2)
            time.sleep(0.3)  # the job reads the part just sent; its checkpoint is up to 1 s away
            victim = cluster.busy_taskmanager()
            assert victim is not None, "the job was not running when the TaskManager was to be killed"
            cluster.kill_taskmanager(victim)
            spread(kafka, cfg, envs[half:], FEED_S / 2)
            loader.send_heartbeat(kafka, cfg.topics["raw"], envs[-1]["received_at"] + 3_600_000)  # as feed() ends
            job = jobs.load(JOB)
            groups = {cfg.topics[role]: job.group_id(role) for role in job.inputs}
            deadline, settled, last = time.monotonic() + 240, 0, None
            while settled < 3:  # caught up on the TaskManager left, and no output grows any more
                assert client.poll() is None, (cfg.data_dir.parent / "client.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the job did not recover on the other TaskManager"
                time.sleep(4)
                behind = lag(kafka, groups)
                moved = cluster.busy_taskmanager() not in (None, victim)
                counts = [len(read_topic(kafka, cfg.topics[role])) for role in ORDERED]
                close = all(b is not None and b <= 2 for b in behind.values())
                settled = settled + 1 if moved and close and counts == last else 0
                last = counts
            overview = cluster.rest("/jobs/overview")["jobs"]
            failures = [cluster.rest(f"/jobs/{j['jid']}/exceptions") for j in overview if j["name"] == JOB]
        finally:
            stop_client(client)
    return outputs(kafka, cfg), expected, victim, overview, failures


def stop_client(client) -> None:
    """The attached `flink run` client and the Python program it started (its process group)."""
    if client.poll() is None:
        os.killpg(client.pid, signal.SIGKILL)
        client.wait(30)


def test_the_job_ran_on_the_cluster_failed_over_and_moved_to_the_other_taskmanager(recovered):
    _, _, victim, overview, failures = recovered
    assert victim in (0, 1)
    assert [j["state"] for j in overview if j["name"] == JOB] == ["RUNNING"]
    # the kill was a failure the job recovered from (Flink lists it among the job's exceptions)
    assert failures and (failures[0].get("exceptionHistory", {}).get("entries") or failures[0].get("root-exception"))


def test_after_a_taskmanager_dies_the_outputs_are_those_of_an_uninterrupted_run(recovered):
    got, expected, _, _, _ = recovered
    assert expected["events"]
    for role in ORDERED:
        assert got[role] == expected[role], f"{role} differs after the TaskManager was killed"


def gone(pid: int) -> bool:
    """The process has exited: no such process, or a zombie (an orphan whose exit status
    nobody collects: the cluster outlives the command that started it, and pid 1 of some
    sandboxes does not reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_flink_start_status_run_stop_from_the_command_line(tmp_path):
    from tests.test_cli import cli
    cfg = make_config(tmp_path, "cli-flink")
    try:
        started = cli(cfg, "flink", "start", "--taskmanagers", "1", timeout=180)
        assert started.returncode == 0 and "1 TaskManagers" in started.stdout, started.stderr
        pids = json.loads((cluster_dir(cfg.data_dir) / "cluster.json").read_text())["pids"]
        assert "1 TaskManagers, 1 of 1 slots free, 0 jobs running" in cli(cfg, "flink", "status").stdout
        again = cli(cfg, "flink", "start", timeout=60)  # running: reused, not started twice
        assert again.returncode == 0 and json.loads((cluster_dir(cfg.data_dir) / "cluster.json").read_text())["pids"] == pids
        refused = cli(cfg, "flink", "run", "identity_merge", timeout=60)  # the shipped config: thread mode
        assert refused.returncode == 2 and "process mode" in refused.stderr
        assert cli(cfg, "flink", "stop", timeout=90).stdout.strip() == "stopped"
        assert all(gone(pid) for pid in pids)
        assert cli(cfg, "flink", "status").returncode == 1
    finally:
        stop_background(cfg.data_dir)
