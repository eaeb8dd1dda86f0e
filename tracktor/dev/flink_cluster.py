"""A Flink standalone session cluster on loopback, from the scripts the apache-flink wheel ships.

One JobManager and N TaskManagers, each a process of its own (`pyflink/bin/jobmanager.sh`
and `taskmanager.sh start-foreground`), with a configuration written to `data_dir/conf`
(the wheel's config.yaml with free loopback ports, small memory sizes and quick heartbeats,
so a TaskManager that dies is noticed within seconds). Jobs are submitted as on any Flink
cluster: `flink run --python jobs/NAME.py --config FILE` (`submit`). Used by
`bin/tracktor flink cluster start` and tests/integration/test_flink_cluster.py.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from tracktor import ROOT
from tracktor.dev.kafka_local import free_ports

RESOURCE_PREFIX = "tm-"  # TaskManager i's resource id is tm-i: the REST API names it so


def flink_home() -> Path:
    import pyflink
    return Path(pyflink.__file__).parent


def cluster_config(rpc_port: int, rest_port: int, slots: int, changelog_dir: Path) -> dict:
    """The wheel's config.yaml with what a loopback cluster of small processes needs. The
    changelog's storage is the TaskManagers' own setting (a job's is not read there): without
    it they would keep the changes in memory, inside every checkpoint's metadata."""
    base = yaml.safe_load((flink_home() / "conf" / "config.yaml").read_text())
    base["jobmanager"] = {"bind-host": "127.0.0.1", "rpc": {"address": "127.0.0.1", "port": rpc_port},
                          "memory": {"process": {"size": "1024m"}}, "execution": {"failover-strategy": "region"}}
    base["taskmanager"] = {"bind-host": "127.0.0.1", "host": "127.0.0.1", "numberOfTaskSlots": slots,
                           "memory": {"process": {"size": "1280m"}}}
    base["rest"] = {"address": "127.0.0.1", "bind-address": "127.0.0.1", "port": rest_port}
    base["heartbeat"] = {"interval": 1000, "timeout": 6000}  # the default 50 s would hold a recovery that long
    base["python"] = {"executable": sys.executable, "client": {"executable": sys.executable}}
    base["state"] = {"changelog": {"storage": "filesystem", "dstl": {"dfs": {"base-path": changelog_dir.resolve().as_uri()}}}}
    return base


class LocalFlinkCluster:
    """`taskmanagers` TaskManagers of `slots` slots each, beside one JobManager."""

    def __init__(self, data_dir: Path, taskmanagers: int = 2, slots: int = 1):
        self.data_dir = data_dir
        self.conf_dir, self.log_dir, self.lib_dir = data_dir / "conf", data_dir / "log", data_dir / "lib"
        self.taskmanagers, self.slots = taskmanagers, slots
        self.rest_port = 0
        self.jobmanager: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    @property
    def rest_address(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if "PYFLINK" not in k and k != "PYTHONFAULTHANDLER"}
        venv_bin = str(Path(sys.executable).parent)
        env.update(FLINK_HOME=str(flink_home()), FLINK_CONF_DIR=str(self.conf_dir), FLINK_LOG_DIR=str(self.log_dir),
                   FLINK_LIB_DIR=str(self.lib_dir), FLINK_PID_DIR=str(self.data_dir),
                   PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}")
        return env

    def start(self, timeout_s: float = 120) -> "LocalFlinkCluster":
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties"):
            shutil.copy(flink_home() / "conf" / name, self.conf_dir / name)
        # The wheel's lib/ plus its opt/flink-python jar: a cluster runs Python operators only
        # with it on every process's classpath (a Flink distribution's docs say: copy it to lib/).
        shutil.rmtree(self.lib_dir, ignore_errors=True)  # linked afresh: the wheel may have changed
        self.lib_dir.mkdir(parents=True)
        for jar in [*(flink_home() / "lib").glob("*.jar"), *(flink_home() / "opt").glob("flink-python-*.jar")]:
            (self.lib_dir / jar.name).symlink_to(jar)
        self.rest_port, rpc_port = free_ports(2)
        (self.conf_dir / "config.yaml").write_text(yaml.safe_dump(cluster_config(rpc_port, self.rest_port, self.slots,
                                                                                 self.data_dir / "changelog")))
        try:
            self.jobmanager = self._launch("jobmanager.sh", "jobmanager")
            self.workers = [self._launch("taskmanager.sh", f"taskmanager-{i}", "-D",
                                         f"taskmanager.resource-id={RESOURCE_PREFIX}{i}")
                            for i in range(self.taskmanagers)]
            self.wait_for_taskmanagers(self.taskmanagers, timeout_s)
        except BaseException:
            self.stop()  # no process is left behind by a start that failed
            raise
        return self

    def _launch(self, script: str, name: str, *args: str) -> subprocess.Popen:
        out = open(self.log_dir / f"{name}.out", "ab")
        return subprocess.Popen(["bash", str(flink_home() / "bin" / script), "start-foreground", *args], env=self.env(),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def rest(self, path: str) -> dict:
        return _get(self.rest_address + path)

    def wait_for_taskmanagers(self, count: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if len(self.rest("/taskmanagers")["taskmanagers"]) >= count:
                    return
            except OSError:
                pass  # the JobManager is starting
            if self.jobmanager.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Flink cluster did not start with {count} TaskManagers; see {self.log_dir}")
            time.sleep(0.5)

    def busy_taskmanager(self) -> int | None:
        """The index of a TaskManager with a slot in use (running a job's tasks), if any."""
        for tm in self.rest("/taskmanagers")["taskmanagers"]:
            if tm["freeSlots"] < tm["slotsNumber"] and tm["id"].startswith(RESOURCE_PREFIX):
                return int(tm["id"][len(RESOURCE_PREFIX):])
        return None

    def kill_taskmanager(self, index: int) -> None:
        """SIGKILL a TaskManager's processes, as a machine that dies."""
        proc = self.workers[index]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def submit(self, job: str, config_path: Path, log: Path | None = None, *args: str) -> subprocess.Popen:
        """`flink run --python jobs/JOB.py --config FILE [ARGS]`, attached: the client runs
        until the job ends; its output goes to `log` (or this process's)."""
        cmd = ["bash", str(flink_home() / "bin" / "flink"), "run", "--python", str(ROOT / "jobs" / f"{job}.py"),
               "--pyExecutable", sys.executable, "--pyClientExecutable", sys.executable,
               "--config", str(config_path), *args]
        out = open(log, "ab") if log else None
        return subprocess.Popen(cmd, cwd=ROOT, env=self.env(), stdout=out, stderr=subprocess.STDOUT if out else None,
                                start_new_session=log is not None)

    def stop(self) -> None:
        for proc in self.workers + ([self.jobmanager] if self.jobmanager else []):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers + ([self.jobmanager] if self.jobmanager else []):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def __enter__(self) -> "LocalFlinkCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- the cluster `bin/tracktor flink cluster start` leaves running -------------------------

def cluster_dir(data_dir: Path) -> Path:
    return data_dir / "flink-cluster"


def _get(url: str) -> dict:
    """GET a JSON answer from the cluster's REST API on loopback (never through a proxy)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as r:
        return json.loads(r.read())


def _ours(pid: int, conf_dir: Path) -> bool:
    """Whether `pid` runs a process of the cluster configured in `conf_dir` (a pid left in
    cluster.json may have been reused by any process since)."""
    try:
        return str(conf_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def running(data_dir: Path) -> dict | None:
    """{"rest": address, "pids": [...], "overview": {...}} of the background cluster, if every
    process it started still runs and its REST API answers."""
    conf_dir = cluster_dir(data_dir) / "conf"
    try:
        state = json.loads((cluster_dir(data_dir) / "cluster.json").read_text())
        if not all(_ours(pid, conf_dir) for pid in state["pids"]):
            return None
        state["overview"] = _get(state["rest"] + "/overview")
        return state
    except (OSError, ValueError, KeyError, TypeError):
        return None


def start_background(data_dir: Path, taskmanagers: int) -> dict:
    """Start the cluster in the background (it outlives this process), unless it runs; what
    is left of one that does not run whole is stopped first."""
    state = running(data_dir)
    if state:
        return state
    stop_background(data_dir)
    cluster = LocalFlinkCluster(cluster_dir(data_dir), taskmanagers).start()
    state = {"rest": cluster.rest_address, "pids": [p.pid for p in [cluster.jobmanager, *cluster.workers]]}
    (cluster_dir(data_dir) / "cluster.json").write_text(json.dumps(state))
    return running(data_dir) or state


def stop_background(data_dir: Path) -> bool:
    """Stop every process of the background cluster (SIGTERM to each process group, SIGKILL
    to what is left after 30 s); False when none was running."""
    path, conf_dir = cluster_dir(data_dir) / "cluster.json", cluster_dir(data_dir) / "conf"
    try:
        pids = [pid for pid in json.loads(path.read_text())["pids"] if _ours(pid, conf_dir)]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while any(_ours(pid, conf_dir) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:  # each group's Python workers too
        _signal_group(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    return bool(pids)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
