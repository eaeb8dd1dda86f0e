"""Poison records written straight to every input topic of every job (bypassing the
collector): each lands on the dead-letter topic with a reason naming its topic, and the
good records after it are processed — no record can stop a job."""
from __future__ import annotations

import json

import pytest

import jobs
from tests.conftest import BEGINNING, make_config, read_topic, run_jobs
from tracktor import warehouse
from tracktor.topics import ensure_topics

pytestmark = pytest.mark.integration
APP = "demo-video"
DEEP = '{"a":' * 300 + "1" + "}" * 300


def deep(record: dict, field: str = "data") -> bytes:
    """`record` with `field` nested 300 levels deep (more than JSON writers take)."""
    text = json.dumps({**record, field: {}})
    return text.replace(f'"{field}": {{}}', f'"{field}": {DEEP}').encode()


def good(role: str, i: int) -> dict:
    """A valid record for a topic role, marked with `i`."""
    ts = BEGINNING + i
    if role == "raw":
        return {"event_id": f"poison-good-raw-{i}", "app": APP, "type": "track", "ts": ts, "received_at": ts,
                "id": "p-user", "action": "After the poison", "data": {"i": i}}
    if role in ("events", "derived"):
        return {"event_id": f"poison-good-{role}-{i}", "app": APP, "kind": "track" if role == "events" else "derived",
                "event": "After the poison", "distinct_id": "p-user", "person_id": "p-user", "ts": ts,
                "received_at": ts, "data": {}}
    if role == "identities":
        return {"app": APP, "distinct_id": f"p-{i}", "person_id": "p-user", "version": i, "ts": ts, "event_id": f"e{i}"}
    if role == "profiles":
        return {"app": APP, "person_id": f"p-{i}", "properties": {"i": i}, "version": i, "ts": ts, "merged_into": None}
    if role == "handoffs":
        return {"job": "cart_timeout", "app": APP, "from": f"p-gone-{i}", "to": "p-user", "at": ts, "state": {}}
    if role == "segments":
        return {"app": APP, "segment": "s", "person_id": f"p-{i}", "change": "entered", "ts": ts, "version": i}
    if role == "control":
        return {"kind": "segment", "app": APP, "name": f"poison-{i}", "definition": {"where": {"event": "After the poison"}}}
    raise AssertionError(f"no good record for {role}: add one for the new job's input")


def poison(role: str) -> list[bytes]:
    """Records no job can use: broken JSON, wrong shapes, wrong types, too deep, too large."""
    base = good(role, 0)
    nested = {"raw": "data", "events": "data", "derived": "data", "profiles": "properties", "handoffs": "state",
              "control": "definition"}.get(role, "app")
    time = {"handoffs": "at", "control": None}.get(role, "ts")  # control records carry no time of their own
    common = [b"{not json", b"[1, 2, 3]", b'"just a string"', b"{}", b"\xff\xfe\xfd", b"null", deep(base, nested)]
    if time:
        common += [json.dumps({**base, time: "yesterday"}).encode(), json.dumps({**base, time: 10 ** 30}).encode()]
    if role == "raw":
        return common + [json.dumps({**base, "data": {"s": "x" * 40_000}}).encode(),
                         json.dumps({**base, "app": "other-app"}).encode(),  # keyed demo-video, for another app
                         json.dumps({**base, "type": "teleport"}).encode(),
                         json.dumps({**base, "ts": base["received_at"] + 10 * 3_600_000}).encode()]
    if role == "control":
        campaign = {"kind": "campaign", "app": APP, "name": "poison-campaign", "definition": {
            "trigger": {"event": "After the poison"}, "start": "a", "blocks": {"a": {"in_app": {"body": "hi"}}}}}
        return common + [json.dumps({**base, "definition": {"where": {"event": 7}}}).encode(),
                         json.dumps({**base, "kind": "workflow"}).encode(),
                         json.dumps({**base, "app": "other-app"}).encode(),
                         json.dumps({**campaign, "definition": {"trigger": {}, "start": "a"}}).encode(),
                         json.dumps({**campaign, "definition": {**campaign["definition"], "blocks": {
                             "a": {"emit": {"event": "After the poison"}}}}}).encode(),  # triggers itself
                         json.dumps({**campaign, "app": "other-app"}).encode(),
                         deep(campaign, "definition")]
    field = {"events": "data", "derived": "data", "profiles": "properties", "handoffs": "state",
             "control": "definition"}.get(role)
    extra = [json.dumps({**base, field: [1]}).encode()] if field else []
    return common + extra + [json.dumps({**base, "app": 42}).encode()]


CONTROL_KINDS = {"segment": "segment_eval", "campaign": "workflow_runner"}


def addressed_to(value: bytes, job: str, role: str) -> bool:
    """Whether `job` should take the record: a handoff that names another job, or a control
    record of another job's kind, is that job's to refuse; anything else is everyone's that
    reads the topic."""
    try:
        record = json.loads(value)
    except ValueError:
        return True
    if not isinstance(record, dict):
        return True
    if role == "control" and record.get("kind") in CONTROL_KINDS:
        return CONTROL_KINDS[record["kind"]] == job
    return not (isinstance(record.get("job"), str) and record["job"] != job)


def key(role: str) -> bytes:
    """raw is keyed by app, every other topic by app:person."""
    return APP.encode() if role == "raw" else f"{APP}:p-user".encode()


@pytest.fixture(scope="module")
def run(kafka, tmp_path_factory):
    cfg = make_config(tmp_path_factory.mktemp("poison"), "poison")
    ensure_topics(kafka, cfg.kafka)
    from kafka import KafkaProducer
    inputs = sorted({role for name in jobs.NAMES for role in jobs.load(name).inputs})
    sent = {}
    with KafkaProducer(bootstrap_servers=kafka, acks="all") as p:
        for role in inputs:
            bad = poison(role)
            for i, value in enumerate(bad):
                p.send(cfg.topics[role], key=key(role), value=value, timestamp_ms=BEGINNING + i)
            p.send(cfg.topics[role], key=key(role), value=json.dumps(good(role, 1)).encode(), timestamp_ms=BEGINNING + 99)
            sent[role] = bad
        p.send(cfg.topics["raw"], key=None, value=json.dumps(good("raw", 2)).encode(), timestamp_ms=BEGINNING)  # no key
        sent["raw"].append(b"(no key)")
    run_jobs(cfg, kafka)
    return cfg, sent, [v for _, v in read_topic(kafka, cfg.topics["dead_letter"])]


def test_every_poison_record_is_a_dead_letter_with_a_reason_naming_its_topic(run):
    cfg, sent, dead = run
    for name in jobs.NAMES:
        job = jobs.load(name)
        for role in job.inputs:
            mine = [d for d in dead if d["job"] == name and d["topic"] == cfg.topics[role]]
            # a bounded replay hands over through a topic of its own, never reading the shared
            # one (test_segment_eval_live sends this poison to a running job's)
            expected = [] if role == "handoffs" else [v for v in sent[role] if addressed_to(v, name, role)]
            assert len(mine) == len(expected), (name, role, [d["reason"] for d in mine])
            assert all(d["reason"] and d["record"] is not None for d in mine)


def test_the_records_after_the_poison_are_processed(run):
    cfg, _, _ = run
    client = warehouse.connect(cfg.clickhouse)
    db = cfg.clickhouse.database
    try:
        events = {r[0] for r in client.query(f"SELECT event_id FROM {db}.events").result_rows}
        assert {"poison-good-raw-1", "poison-good-events-1", "poison-good-derived-1"} <= events
        assert client.query(f"SELECT count() FROM {db}.identities WHERE distinct_id = 'p-1'").result_rows[0][0] == 1
        assert client.query(f"SELECT count() FROM {db}.persons WHERE person_id = 'p-1'").result_rows[0][0] == 1
        assert client.query(f"SELECT count() FROM {db}.segment_changes WHERE person_id = 'p-1'").result_rows[0][0] == 1
    finally:
        client.close()
