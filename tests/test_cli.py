"""The command line on real processes: the background broker and an unbounded job."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import clean_env, cli, make_config, read_topic, start_job, stop_job, wait_for
from tracktor import ROOT
from tracktor.topics import ensure_topics
from tracktor.dev import envelopes as E, loader, stack

pytestmark = pytest.mark.integration  # a real broker, real Flink jobs, real chDB


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


@pytest.mark.faults
def test_kafka_start_brokers_3_runs_a_replicated_cluster_restarts_a_dead_node_and_stops_every_node(tmp_path):
    from confluent_kafka.admin import AdminClient

    cfg = make_config(tmp_path, "cli-cluster")
    try:
        started = cli(cfg, "kafka", "start", "--brokers", "3", timeout=180)
        assert started.returncode == 0, started.stderr
        address = re.search(r"embedded Kafka at (\S+);", started.stdout).group(1)
        assert len(address.split(",")) == 3
        meta = AdminClient({"bootstrap.servers": address}).list_topics(cfg.topics["raw"], timeout=30)
        assert len(meta.brokers) == 3
        assert {len(p.replicas) for p in meta.topics[cfg.topics["raw"]].partitions.values()} == {3}
        other = cli(cfg, "kafka", "start", "--brokers", "1", timeout=60)
        assert other.returncode != 0 and "runs with 3 node(s)" in other.stderr
        pids = [n["pid"] for n in json.loads((stack.broker_dir(cfg) / "broker.json").read_text())["nodes"]]
        os.killpg(pids[1], signal.SIGKILL)  # a node dies: the cluster is not all there
        time.sleep(1)
        status = cli(cfg, "kafka", "status")
        assert status.returncode == 1 and "2 of 3 nodes running" in status.stdout
        again = cli(cfg, "kafka", "start", timeout=180)  # the kind started last; only the dead node starts
        assert again.returncode == 0 and f"embedded Kafka at {address}" in again.stdout, again.stderr
        now = [n["pid"] for n in json.loads((stack.broker_dir(cfg) / "broker.json").read_text())["nodes"]]
        assert now[0] == pids[0] and now[2] == pids[2] and now[1] != pids[1]
        assert cli(cfg, "kafka", "status").returncode == 0
        assert cli(cfg, "kafka", "stop", timeout=120).stdout.strip() == "stopped"
        for pid in now:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        five = cli(cfg, "kafka", "start", "--brokers", "5", timeout=60)  # the cluster's data has 3 nodes
        assert five.returncode != 0 and "has 3 nodes" in five.stderr
    finally:
        stack.stop_embedded(cfg)


def test_a_job_without_a_broker_says_how_to_start_one(tmp_path):
    cfg = make_config(tmp_path, "cli-nobroker")
    out = cli(cfg, "job", "identity_merge", timeout=60)
    assert out.returncode == 2 and "bin/tracktor kafka start" in out.stderr


def test_a_bounded_run_from_a_savepoint_is_refused_and_the_savepoint_kept(kafka, tmp_path):
    """A job takes the snapshot it restores as its own (CLAIM mode), and a run that ends
    discards what it owns: a bounded run would delete the savepoint it started from."""
    cfg = make_config(tmp_path, "cli-bounded-restore", kafka)
    savepoint = tmp_path / "savepoint-1"
    savepoint.mkdir()
    (savepoint / "_metadata").write_bytes(b"kept")
    out = cli(cfg, "job", "identity_merge", "--bounded", "--from-savepoint", str(savepoint), timeout=60)
    assert out.returncode == 2 and "give one of them" in out.stderr, out.stderr
    assert (savepoint / "_metadata").read_bytes() == b"kept"


def _running(pid: str) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_collector_command_serves_from_several_processes_and_stops_them_all(kafka, tmp_path):
    import urllib.request
    from tracktor.dev.kafka_local import free_port
    cfg = make_config(tmp_path, "cli-collector", bootstrap_servers=kafka)
    assert cli(cfg, "collector", "--workers", "0", timeout=60).returncode == 2
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tracktor.cli", "--config", str(cfg.path), "collector",
                               "--workers", "2", "--port", str(port)], cwd=ROOT, env=clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = server.stdout.readline()
        assert f"collector at http://127.0.0.1:{port} (2 processes)" in banner, banner
        url = f"http://127.0.0.1:{port}/track?sid=demo-video&ts=1429186474&id=u1&action=A"
        for _ in range(20):
            with urllib.request.urlopen(url, timeout=30) as r:
                assert r.status == 200
        children = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()
        assert children, "no collector child process"
        server.send_signal(signal.SIGINT)
        assert server.wait(60) == 0
        deadline = time.monotonic() + 10  # multiprocessing's resource tracker leaves when it sees its parent gone
        while [c for c in children if _running(c)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [c for c in children if _running(c)]
    finally:
        if server.poll() is None:
            server.kill()
    assert len([v for _, v in read_topic(kafka, cfg.topics["raw"])]) == 20


def test_an_unbounded_job_runs_on_and_resumes_its_state_after_being_killed(kafka, tmp_path):
    cfg = make_config(tmp_path, "cli-job", bootstrap_servers=kafka)
    app, t0 = "demo-video", 1_767_225_600_000
    assert cli(cfg, "load", "--people", "5", "--seed", "3", timeout=60).returncode == 0

    def events():
        return [v["event_id"] for _, v in read_topic(kafka, cfg.topics["events"])]

    def profile(person):
        found = [v for _, v in read_topic(kafka, cfg.topics["profiles"]) if v["person_id"] == person]
        return found[-1]["properties"] if found else None

    job = start_job(cfg)
    try:
        first = wait_for("first events", events, job)
        # data sent while it runs is consumed without a restart
        loader.send(kafka, cfg.topics["raw"], [E.set_properties(app, "a-keeper", {"city": "Oslo"}, t0)])
        assert wait_for("a-keeper profile", lambda: profile("a-keeper"), job) == {"city": "Oslo"}
        assert job.poll() is None  # unbounded: still running
    finally:
        stop_job(job)

    job = start_job(cfg)  # resumes from the newest checkpoint, which holds a-keeper's profile
    try:
        loader.send(kafka, cfg.topics["raw"], [E.identify(app, "keeper", "a-keeper", t0 + 1000),
                                              E.track(app, "keeper", "Registration", t0 + 2000)])
        assert wait_for("merged keeper profile", lambda: profile("keeper"), job) == {"city": "Oslo"}
        ids = wait_for("keeper event", lambda: (lambda e: e if len(e) > len(first) else None)(events()), job)
        assert len(ids) == len(set(ids)), "an event was written twice across the restart"
    finally:
        stop_job(job)


def test_anonymous_persons_are_forgotten_after_the_retention_and_identified_ones_kept(kafka, tmp_path):
    """identity.anonymous_retention (Flink state TTL, processing time) on a real job: an
    anonymous person's properties are gone after it, an identified person's stay, and so do
    those of an identified id merged into an anonymous one."""
    cfg = make_config(tmp_path, "cli-ttl", bootstrap_servers=kafka, sections={"identity": {"anonymous_retention": "4s"}})
    from tracktor.topics import ensure_topics
    ensure_topics(kafka, cfg.kafka)
    app, t0 = "demo-video", 1_767_225_600_000

    def profile(person, ts):
        found = [v for _, v in read_topic(kafka, cfg.topics["profiles"]) if v["person_id"] == person and v["ts"] == ts]
        return found[-1]["properties"] if found else None

    loader.send(kafka, cfg.topics["raw"], [
        E.set_properties(app, "a-forgotten", {"seen": "once"}, t0),
        E.set_properties(app, "kept", {"plan": "gold"}, t0),
        E.set_properties(app, "bob", {"email": "bob@example.com"}, t0),
        E.alias(app, "bob", "a-canonical", t0 + 1)])
    job = start_job(cfg)
    try:
        assert wait_for("the first profiles", lambda: profile("a-canonical", t0 + 1), job) == {"email": "bob@example.com"}
        time.sleep(6)  # past the retention
        loader.send(kafka, cfg.topics["raw"], [
            E.identify(app, "newcomer", "a-forgotten", t0 + 10),
            E.set_properties(app, "kept", {"city": "Oslo"}, t0 + 11),
            E.set_properties(app, "a-canonical", {"city": "Rome"}, t0 + 12)])
        assert wait_for("kept's new profile", lambda: profile("kept", t0 + 11), job) == {"plan": "gold", "city": "Oslo"}
        assert wait_for("a-canonical's", lambda: profile("a-canonical", t0 + 12), job) == {
            "email": "bob@example.com", "city": "Rome"}
        merged = [v for _, v in read_topic(kafka, cfg.topics["profiles"]) if v["person_id"] == "newcomer"]
        assert all("seen" not in v["properties"] for v in merged)  # a-forgotten's properties had expired
    finally:
        stop_job(job)


def test_warehouse_serve_owns_the_warehouse_until_stopped(tmp_path):
    import json
    import signal
    import urllib.request

    from tracktor.warehouse.shared import owner_file, users_file, wait_released
    cfg = make_config(tmp_path, "cli-wh")
    proc = subprocess.Popen([sys.executable, "-m", "tracktor.cli", "--config", str(cfg.path), "warehouse", "serve"],
                            cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline()
        assert "ClickHouse HTTP interface" in banner, proc.stderr.read()
        path = cfg.clickhouse.chdb_path
        port = json.loads(owner_file(path).read_text())["port"]
        assert f":{port}:" in banner
        reader = json.loads(users_file(path).read_text())["reader"]
        url = f"http://127.0.0.1:{port}/?user=reader&password={reader}&query=EXISTS%20TABLE%20tracktor.events"
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.read() == b"1\n"  # migrated
        second = cli(cfg, "warehouse", "serve", timeout=60)
        assert second.returncode == 2 and "serves it already" in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    wait_released(cfg.clickhouse.chdb_path, timeout_s=1)
    assert not owner_file(cfg.clickhouse.chdb_path).exists()


def test_report_prints_funnels_metrics_and_the_drill_down_from_clickhouse(tmp_path):
    from tests.test_warehouse import ev, ident, write
    from tracktor import warehouse

    cfg = make_config(tmp_path, "cli-report")
    client = warehouse.connect(cfg.clickhouse)
    warehouse.migrate(client, cfg.clickhouse.database)
    steps = ["Site visit", "Free movie view", "Registration", "Upgrade to Premium"]
    rows = [ev("a-1", steps[0], 0, app="demo-video"), ev("u1", steps[1], 1, app="demo-video"),
            ev("u2", steps[0], 2, app="demo-video")]
    write(client, "events", rows, cfg.clickhouse.database)
    write(client, "identities", [ident("a-1", "u1", 1, app="demo-video")], cfg.clickhouse.database)
    client.close()  # chDB: one process at a time

    period = ["--app", "demo-video", "--from", "2026-01-01", "--to", "2026-01-01"]
    out = cli(cfg, "report", "funnel", "video_journey", *period)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[2].split()[-1] == "2" and lines[3].split()[3] == "1"  # Site visit 2 people; Free movie view 1 (50.0%)
    data = json.loads(cli(cfg, "report", "funnel", "video_journey", *period, "--json").stdout)
    assert [s["people"] for s in data] == [2, 1, 0, 0]
    drill = cli(cfg, "report", "funnel", "video_journey", *period, "--people", "1", "--dropped")
    assert "u2" in drill.stdout and "u1" not in drill.stdout
    metric = json.loads(cli(cfg, "report", "metric", "site_visitors", *period, "--json").stdout)
    assert metric["people"] == 2 and metric["days"] == [["2026-01-01", 2]]
    unknown = cli(cfg, "report", "funnel", "nope", *period)
    assert unknown.returncode == 2 and "has no funnel 'nope'" in unknown.stderr
    chart = tmp_path / "visitors.html"
    out = cli(cfg, "report", "metric", "site_visitors", *period, "--html", str(chart))
    assert out.returncode == 0 and "<svg" in chart.read_text()
    adhoc = json.loads(cli(cfg, "report", "funnel", "two", *period, "--json",
                           "--define", "{steps: [Site visit, Free movie view], window: 1h}").stdout)
    assert [s["people"] for s in adhoc] == [2, 1]
    bad = cli(cfg, "report", "metric", "x", *period, "--define", "{type: average_property_value}")
    assert bad.returncode == 2 and "missing key 'property'" in bad.stderr


def test_report_and_the_api_answer_while_metric_rollup_runs(kafka, tmp_path):
    """Embedded mode: the running job owns the chDB warehouse; readers go through it."""
    import urllib.request

    from tracktor.warehouse.shared import owner_file
    cfg = make_config(tmp_path, "cli-live", kafka)
    ensure_topics(kafka, cfg.kafka)
    job = start_job(cfg, "metric_rollup")
    api = None
    try:
        from tests.conftest import BEGINNING
        loader.send(kafka, cfg.topics["events"], [
            {"event_id": f"e{i}", "app": "demo-video", "kind": "track", "event": "Site visit", "distinct_id": f"v{i}",
             "person_id": f"v{i}", "ts": BEGINNING + i, "received_at": BEGINNING + i, "data": {}} for i in range(3)])
        period = ["--app", "demo-video", "--from", "2026-01-01", "--to", "2026-01-01"]

        def visitors():
            out = cli(cfg, "report", "metric", "site_visitors", *period, "--json", timeout=60)
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout)["people"] == 3
        wait_for("report to count the new events", visitors, job)
        # the job's Python worker (PyFlink's loopback mode: the job's own process) owns the warehouse
        path = Path(cfg.clickhouse.dsn[len("chdb://"):])
        assert json.loads(owner_file(path).read_text())["pid"] == job.pid
        api = subprocess.Popen([sys.executable, "-m", "tracktor.cli", "--config", str(cfg.path), "serve", "--port", "0"],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True, env=clean_env())
        address = re.search(r"at (http://[\d.:]+)", api.stdout.readline()).group(1)
        req = urllib.request.Request(f"{address}/api/v1/apps/demo-video/metrics/site_visitors?from=2026-01-01&to=2026-01-01",
                                     headers={"Authorization": f"Bearer {cfg.apps['demo-video'].read_token}"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert json.loads(resp.read())["people"] == 3
        assert job.poll() is None  # the writer kept running throughout
    finally:
        if api is not None:
            api.terminate()
            api.wait(30)
        stop_job(job)
