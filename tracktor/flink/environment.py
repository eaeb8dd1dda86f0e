"""The one place that builds a PyFlink environment: jars, interpreter, checkpoints, parallelism."""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from pathlib import Path

from tracktor import JARS_DIR
from tracktor.config.settings import FlinkSettings


OPERATORS_JAR = JARS_DIR / "tracktor" / "tracktor-flink.jar"
CHANGELOG_MATERIALIZE = "1min"  # with flink.state_changelog: how often the whole state is written


def job_jars() -> list[Path]:
    """The jars a job needs that Flink lacks: the Kafka connector fetched and Tracktor's
    operators (docker/jars/src) built by `bin/tracktor setup`. Either is left out where it is
    not there: on a cluster whose image has both in /opt/flink/lib (docker/Dockerfile.flink)."""
    connectors = sorted((JARS_DIR / "flink").glob("flink-sql-connector-kafka-*.jar"))
    return connectors[-1:] + ([OPERATORS_JAR] if OPERATORS_JAR.exists() else [])


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint (chk-N with its _metadata) or savepoint (the job stopped
    with one: savepoints/savepoint-*) under `directory`, if any."""
    done = [m.parent for pattern in ("*/chk-*/_metadata", "savepoints/savepoint-*/_metadata")
            for m in directory.glob(pattern)]
    return max(done, key=lambda p: p.stat().st_mtime) if done else None


def local_path(path) -> Path:
    """A checkpoint or savepoint named as the runner prints it (`file:/…`) or as a path."""
    text = str(path)
    return Path(text[len("file:"):] if text.startswith("file:") else text).resolve()


def savepoint_dir(flink: FlinkSettings, job_name: str) -> Path:
    """Where a job stopped with a savepoint writes it: beside its checkpoints, so it resumes from it."""
    return (flink.checkpoint_dir / job_name / "savepoints").resolve()


def use_this_interpreter(jvm_options: str = "") -> None:
    """Python workers must run this interpreter (the venv's), and thread mode resolves
    packages through the `python` on PATH — as it was when the JVM started, so call this
    before anything launches PyFlink's gateway; `jvm_options` (flink.jvm_options) go to that
    JVM, each one not in JAVA_TOOL_OPTIONS already added after those (and so inherited by
    processes started later: a JVM already running is not changed).

    PYTHONFAULTHANDLER is kept from the JVM: in thread mode the JVM embeds Python, whose
    fault handler would take the SIGSEGVs the JVM raises on purpose (its implicit null
    checks), re-raise them, and so kill the JVM ("SIGSEGV (sent by kill)", SI_TKILL)."""
    os.environ.pop("PYTHONFAULTHANDLER", None)
    given = os.environ.get("JAVA_TOOL_OPTIONS", "").split()
    missing = [option for option in jvm_options.split() if option not in given]
    if missing:
        os.environ["JAVA_TOOL_OPTIONS"] = " ".join(given + missing)
    venv_bin = str(Path(sys.executable).parent)
    if not os.environ.get("PATH", "").startswith(venv_bin + os.pathsep):
        os.environ["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"


@contextlib.contextmanager
def one_java_thread():
    """Keep this thread's PyFlink calls on one Java thread while a job is built in it.

    A PyFlink call runs on the Java thread of the py4j connection it takes from a pool, and a
    job's build relies on two things set on one Java thread only: the class loader that sees
    Tracktor's jars (set where `stream_env` added them) and Calcite's metadata provider (set
    where the table environment was created, FLINK-23020). A thread keeps taking the same
    connection unless another thread holds it at that moment, and in a process that builds
    jobs the one other taker is the garbage collector: a Java object's finalizer sends its
    release from whichever thread a collection ran on (a server's, a Kafka client's). The
    build then went on on a fresh Java thread and failed, now and then: "Could not found the
    Java class 'io.tracktor.flink...'" or NullPointerException "metadataHandlerProvider".
    So the garbage is collected here first and the automatic collection is off for the build
    (seconds); tests/integration/test_one_java_thread.py makes the race happen. Not closed: a
    collection already running on another thread, a Java object released by another thread
    (docs/architecture.md, "A job's build keeps to one Java thread")."""
    from tracktor.flink.bundling import collector_paused  # bundling imports this module
    gc.collect()
    with collector_paused():
        yield


def stream_env(flink: FlinkSettings, job_name: str, resume: bool = False, restore: Path | None = None,
               serve_rest: bool = False, allow_non_restored: bool = False):
    """A StreamExecutionEnvironment plus a StreamTableEnvironment on it, configured from `flink:`.

    With `resume`, the job restores its state from its newest checkpoint or savepoint: a job
    stopped or killed carries on where that left it (its Kafka offsets are in it); `restore`
    names the checkpoint or savepoint to restore instead; with `allow_non_restored` a state that
    no operator of the job claims (an operator whose id changed with the job's graph) is left
    behind instead of failing the start. With `serve_rest` the job's REST API
    listens on the first free port of `flink.rest_ports` (127.0.0.1), for `bin/tracktor status`.
    """
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    use_this_interpreter(flink.jvm_options)
    conf = Configuration()
    settings = {
        "pipeline.name": job_name,
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "python.execution-mode": flink.execution_mode,
        # Each element a Python function gets is a bundle of records already (bundling.py):
        # PyFlink's own bundles of elements would hold watermarks back until they finish
        # (up to python.fn-execution.bundle.time, 1 s), so each element is one of them.
        "python.fn-execution.bundle.size": "1",
        "parallelism.default": str(flink.parallelism),
        "state.backend.type": flink.state_backend,
        "execution.checkpointing.interval": f"{flink.checkpoint_interval_ms}ms",
        "execution.checkpointing.dir": (flink.checkpoint_dir / job_name).resolve().as_uri(),
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        # With the changelog, a checkpoint writes the state's changes since the last one, not
        # the whole state (the hashmap backend's snapshot was ~0.07 of a core per job at 1 s
        # checkpoints, growing with the state); the whole state is written every
        # CHANGELOG_MATERIALIZE, which bounds the changes a restore replays.
        "state.changelog.enabled": str(flink.state_changelog).lower(),
        "state.changelog.storage": "filesystem",
        "state.changelog.dstl.dfs.base-path": (flink.checkpoint_dir / job_name / "changelog").resolve().as_uri(),
        "state.changelog.periodic-materialize.interval": CHANGELOG_MATERIALIZE,
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "taskmanager.memory.process.size": flink.taskmanager_memory,
        "rest.bind-address": "127.0.0.1",
        "rest.address": "127.0.0.1",
        "classloader.check-leaked-classloader": "false",
        # A failing task is retried a few times, then the job fails with the error (the
        # default with checkpointing retries forever, so a bug would hang a bounded run).
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": str(flink.restart_attempts),
        "restart-strategy.fixed-delay.delay": "2s",
    }
    if serve_rest:
        settings["rest.bind-port"] = flink.rest_ports
    jars = [jar.as_uri() for jar in job_jars()]
    if jars:
        settings["pipeline.jars"] = ";".join(jars)

    if resume or restore:
        checkpoint = local_path(restore) if restore else latest_checkpoint(flink.checkpoint_dir / job_name)
        if checkpoint is not None:
            logging.getLogger(__name__).info("%s resumes from %s", job_name, checkpoint)
            settings["execution.state-recovery.path"] = checkpoint.as_uri()
            settings["execution.state-recovery.ignore-unclaimed-state"] = str(allow_non_restored).lower()
            # The job takes the snapshot as its own (the changelog cannot restore otherwise: in
            # NO_CLAIM mode its first checkpoint fails), so Flink deletes it once the job's
            # own checkpoints replace it.
            settings["execution.state-recovery.claim-mode"] = "CLAIM"
    for k, v in settings.items():
        conf.set_string(k, v)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    if jars:  # the client builds operators from these jars' classes too
        from pyflink.util.java_utils import add_jars_to_context_class_loader
        add_jars_to_context_class_loader(jars)
    t_env = StreamTableEnvironment.create(env)
    return env, t_env


def jvm():
    """The JVM side of PyFlink (Tracktor's operators are in io.tracktor.flink)."""
    from pyflink.java_gateway import get_gateway
    return get_gateway().jvm
