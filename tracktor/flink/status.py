"""What `bin/tracktor status` shows of each job: its state, records in and out per second,
its last checkpoint (from Flink's REST API), its consumer lag per input topic (Kafka
offsets) and its dead letters.

An unbounded job run by this machine's runner (`bin/tracktor job NAME`) registers itself in
`<flink.checkpoint_dir>/<job>/running.json` (its process, REST address and Flink job id)
while it runs; a job whose process is gone shows as not running.
"""
from __future__ import annotations

import http.client
import json
import os
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REST_TIMEOUT_S = 5


def running_file(flink, job_name: str) -> Path:
    return flink.checkpoint_dir / job_name / "running.json"


def rest_address(flink, job_id: str, wait_s: float = 0.0) -> str | None:
    """The REST API serving `job_id`: the port of flink.rest_ports that knows the job
    (looked for again until `wait_s` has passed: a job just submitted may not be listed yet)."""
    first, last = (int(p) for p in flink.rest_ports.split("-"))
    deadline = time.monotonic() + wait_s
    while True:
        for port in range(first, last + 1):
            try:
                _get(f"http://127.0.0.1:{port}/jobs/{job_id}", timeout=0.5)
                return f"http://127.0.0.1:{port}"
            except (OSError, ValueError, http.client.HTTPException):
                continue
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)


@contextmanager
def registered(flink, job_name: str, job_id: str):
    """The job is registered as running (for `status`) while the block runs."""
    path = running_file(flink, job_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"running.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "rest": rest_address(flink, job_id, wait_s=30), "job_id": job_id,
                               "started_ms": int(time.time() * 1000)}))
    os.replace(tmp, path)
    try:
        yield
    finally:
        try:
            if json.loads(path.read_text())["pid"] == os.getpid():  # not another instance's
                path.unlink()
        except (OSError, ValueError, KeyError):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _get(url: str, timeout: float = REST_TIMEOUT_S):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def _rate(rest: str, job_id: str, vertex: str, metric: str) -> float:
    """The sum over a vertex's subtasks of one of its per-second metrics."""
    got = _get(f"{rest}/jobs/{job_id}/vertices/{vertex}/subtasks/metrics?get={metric}&agg=sum")
    return float(got[0]["sum"]) if got else 0.0


def flink_view(info: dict) -> dict:
    """State, records/s in and out (what leaves the first tasks and enters the last: the
    JVM bundles records for Python in the first, so a bundle there counts as one), the last
    completed checkpoint, from the job's REST API."""
    rest, job_id = info["rest"], info["job_id"]
    job = _get(f"{rest}/jobs/{job_id}")
    plan = job["plan"]["nodes"]
    fed = {i["id"] for node in plan for i in node.get("inputs", [])}
    sources = [n["id"] for n in plan if not n.get("inputs")]
    sinks = [n["id"] for n in plan if n["id"] not in fed]
    checkpoints = _get(f"{rest}/jobs/{job_id}/checkpoints")
    last = (checkpoints.get("latest") or {}).get("completed")
    return {"state": job["state"],
            "records_in_per_s": sum(_rate(rest, job_id, v, "numRecordsOutPerSecond") for v in sources),
            "records_out_per_s": sum(_rate(rest, job_id, v, "numRecordsInPerSecond") for v in sinks),
            "last_checkpoint": None if not last else {
                "id": last["id"], "completed_ms": last["latest_ack_timestamp"],
                "duration_ms": last["end_to_end_duration"]},
            "checkpoints": checkpoints.get("counts", {})}


def dead_letters(bootstrap_servers: str, topic: str) -> tuple[dict[str, int], bool]:
    """Dead letters per job (the records of the dead-letter topic are keyed by the job), and
    whether the whole topic was read (else the counts are at least these)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    reader = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "tracktor-status", "enable.auto.commit": False,
                       "isolation.level": "read_committed", "enable.partition.eof": True,
                       "auto.offset.reset": "earliest"})  # offset 0 may be gone: from the first kept one
    counts: dict[str, int] = {}
    try:
        metadata = reader.list_topics(topic, timeout=30).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return counts, True
        parts = [TopicPartition(topic, p, 0) for p in metadata.partitions]
        pending = {tp.partition for tp in parts}
        reader.assign(parts)
        while pending:
            msg = reader.poll(5)
            if msg is None:
                return counts, False
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                continue
            key = (msg.key() or b"").decode(errors="replace")
            if not key.startswith("#hb:"):
                counts[key] = counts.get(key, 0) + 1
        return counts, True
    finally:
        reader.close()


def status(cfg, bootstrap_servers: str) -> list[dict]:
    """One entry per job of jobs.NAMES."""
    import jobs
    from tracktor.topics import lag

    dead, complete = dead_letters(bootstrap_servers, cfg.topics["dead_letter"])
    out = []
    for name in jobs.NAMES:
        job = jobs.load(name)
        entry = {"job": name, "state": "NOT RUNNING", "dead_letters": dead.get(name, 0),
                 "dead_letters_complete": complete}
        try:
            info = json.loads(running_file(job.flink_settings(cfg), name).read_text())
        except (OSError, ValueError):
            info = None  # not registered: not running here
        if info and _alive(info["pid"]):
            info["rest"] = info["rest"] or rest_address(job.flink_settings(cfg), info["job_id"])
            entry.update(pid=info["pid"], job_id=info["job_id"], rest=info["rest"], started_ms=info["started_ms"])
            try:
                entry.update(flink_view(info) if info["rest"] else {"state": "UNREACHABLE (no REST API found)"})
            except (OSError, ValueError, KeyError, http.client.HTTPException) as e:
                entry["state"] = f"UNREACHABLE ({e})"
        try:
            entry["lag"] = lag(bootstrap_servers, {cfg.topics[role]: job.group_id(role) for role in job.inputs})
        except KeyError as e:
            entry["lag"] = {}
            entry["problem"] = f"topic {e} does not exist: run `bin/tracktor topics`"
        out.append(entry)
    return out


def render(entries: list[dict]) -> str:
    """The status as a table of text."""
    now = time.time() * 1000
    lines = []
    for e in entries:
        cp = e.get("last_checkpoint")
        lines.append(f"{e['job']}: {e['state']}" + (f" (pid {e['pid']}, {e['rest']})" if "pid" in e else ""))
        if "records_in_per_s" in e:
            lines.append(f"  records/s in {e['records_in_per_s']:,.1f}, out {e['records_out_per_s']:,.1f} "
                         "(bundles of records count as one)")
            lines.append("  last checkpoint: " + (f"#{cp['id']} {(now - cp['completed_ms']) / 1000:.1f}s ago, "
                                                   f"took {cp['duration_ms']} ms" if cp else "none yet")
                         + f"; failed {e['checkpoints'].get('failed', 0)}")
        for topic, behind in e["lag"].items():
            lines.append(f"  lag {topic}: " + ("unknown (its end could not be read)" if behind is None else f"{behind:,}"))
        if "problem" in e:
            lines.append(f"  {e['problem']}")
        lines.append(f"  dead letters: {'' if e['dead_letters_complete'] else 'at least '}{e['dead_letters']:,}")
    return "\n".join(lines)
