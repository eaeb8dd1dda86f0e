"""segment_eval live: identity_merge and segment_eval as processes of their own, the
definitions changed while they run with `tracktor segments apply / delete`: a segment added
takes in the people who already qualify, a segment edited lets out those who no longer do, a
segment deleted lets its members out, each with the definition as the cause; a wrong
definition is refused by the command with the reason, and one written to the topic by
anything else goes to the dead letters while the job keeps the last good one and goes on."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import orjson
import pytest
import yaml

from tests.conftest import clean_env, make_config, read_topic, start_job, stop_job, wait_for
from tests.integration.test_poison import addressed_to, poison
from tracktor import ROOT, config
from tracktor.dev import envelopes as E, loader
from tracktor.topics import ensure_topics

pytestmark = pytest.mark.integration
APP = "demo-video"


def now() -> int:
    return int(time.time() * 1000)


def segments_cli(cfg, *args):
    return subprocess.run([sys.executable, "-m", "tracktor.cli", "--config", str(cfg.path), "segments", *args,
                           "--app", APP], cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120)


def changes(kafka, cfg, segment):
    return [(r["person_id"], r["change"], r["cause"]) for _, r in read_topic(kafka, cfg.topics["segments"])
            if r["segment"] == segment]


def apply(cfg, tmp, definitions):
    path = tmp / "segments.yaml"
    path.write_text(yaml.safe_dump(definitions))
    done = segments_cli(cfg, "apply", str(path))
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def live(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("segments-live")
    # no cart_timeout runs here, so tracktor.derived (one of segment_eval's clock inputs) stays
    # empty: a short idle timeout lets the clock go on without it, as such a deployment would set
    cfg = make_config(tmp, "segments-live", bootstrap_servers=kafka, idle_partition_timeout=5)
    tree = yaml.safe_load(cfg.path.read_text())
    for app in tree["apps"]:
        app["segments"] = {"watchers": {"where": {"event": "Item1"}}} if app["sid"] == APP else {}
    cfg.path.write_text(yaml.safe_dump(tree))
    cfg = config.load(cfg.path)
    ensure_topics(kafka, cfg.kafka)
    loader.send(kafka, cfg.topics["raw"], [
        E.track(APP, "ann", "Item1", now()), E.set_properties(APP, "ann", {"age": 40}, now()),
        E.track(APP, "bob", "Item2", now()), E.set_properties(APP, "bob", {"age": 20}, now()),
    ])
    merge, segments = start_job(cfg, "identity_merge"), start_job(cfg, "segment_eval")
    try:
        wait_for("ann in watchers", lambda: changes(kafka, cfg, "watchers"), segments, seconds=180)
        yield cfg, tmp, segments
    finally:
        stop_job(merge)
        stop_job(segments)


def test_a_segment_added_while_running_takes_in_who_already_qualifies(live, kafka):
    cfg, tmp, job = live
    done = apply(cfg, tmp, {"item2_fans": {"where": {"event": "Item2"}},
                            "adults": {"where": {"property": "age", "op": "gte", "value": 30}}})
    assert "item2_fans" in done.stdout and "adults" in done.stdout
    cause = {"reason": "definition", "segment": "item2_fans"}
    assert wait_for("bob in item2_fans", lambda: changes(kafka, cfg, "item2_fans"), job) == [("bob", "entered", cause)]
    assert wait_for("ann in adults", lambda: changes(kafka, cfg, "adults"), job) == [
        ("ann", "entered", {"reason": "definition", "segment": "adults"})]


def test_a_segment_edited_lets_out_who_no_longer_qualifies_and_takes_in_who_does(live, kafka):
    cfg, tmp, job = live
    apply(cfg, tmp, {"adults": {"where": {"property": "age", "op": "lt", "value": 30}}})
    cause = {"reason": "definition", "segment": "adults"}
    got = wait_for("the adults edited", lambda: len(changes(kafka, cfg, "adults")) >= 3 and changes(kafka, cfg, "adults"),
                   job)
    assert sorted(got[1:]) == [("ann", "exited", cause), ("bob", "entered", cause)]


def test_a_segment_deleted_lets_its_members_out_and_takes_no_one_in_after(live, kafka):
    cfg, tmp, job = live
    done = segments_cli(cfg, "delete", "item2_fans")
    assert done.returncode == 0, done.stderr
    got = wait_for("item2_fans deleted", lambda: len(changes(kafka, cfg, "item2_fans")) >= 2
                   and changes(kafka, cfg, "item2_fans"), job)
    assert got[1] == ("bob", "exited", {"reason": "definition", "segment": "item2_fans"})
    loader.send(kafka, cfg.topics["raw"], [E.track(APP, "cy", "Item2", now()), E.track(APP, "cy", "Item1", now())])
    wait_for("cy in watchers", lambda: ("cy", "entered") in {c[:2] for c in changes(kafka, cfg, "watchers")}, job)
    assert len(changes(kafka, cfg, "item2_fans")) == 2  # cy watched Item2 after the segment was gone


def test_a_wrong_definition_is_refused_by_the_command_with_the_reason(live, kafka):
    cfg, tmp, _ = live
    path = tmp / "wrong.yaml"
    path.write_text(yaml.safe_dump({"oops": {"where": {"property": "age", "op": "between", "value": 3}}}))
    done = segments_cli(cfg, "apply", str(path))
    assert done.returncode == 2 and "oops" in done.stderr and "where" in done.stderr, done.stderr
    assert not changes(kafka, cfg, "oops")


def test_a_wrong_definition_on_the_topic_is_a_dead_letter_and_the_last_good_one_stays(live, kafka):
    from confluent_kafka import Producer
    cfg, tmp, job = live
    producer = Producer({"bootstrap.servers": kafka})
    record = {"kind": "segment", "app": APP, "name": "watchers", "definition": {"where": {"event": 7}}}
    producer.produce(cfg.topics["control"], orjson.dumps(record), f"{APP}:watchers".encode())
    producer.flush(30)
    letters = wait_for("a dead letter for the wrong definition", lambda: [
        v for _, v in read_topic(kafka, cfg.topics["dead_letter"]) if "watchers" in json.dumps(v)], job)
    assert len(letters) == 1 and "event" in letters[0]["reason"]
    # the job goes on with the last good definition: Item1 still makes a watcher
    loader.send(kafka, cfg.topics["raw"], [E.track(APP, "dee", "Item1", now())])
    wait_for("dee in watchers", lambda: ("dee", "entered") in {c[:2] for c in changes(kafka, cfg, "watchers")}, job)
    assert job.poll() is None


def test_poison_on_the_handoffs_topic_is_a_dead_letter_and_the_job_goes_on(live, kafka):
    """Records no job can use, written straight to the running job's handoffs topic (a
    bounded replay uses a topic of its own, so test_poison cannot reach it)."""
    from confluent_kafka import Producer
    cfg, _, job = live
    bad = poison("handoffs")
    producer = Producer({"bootstrap.servers": kafka})
    for value in bad:
        producer.produce(cfg.topics["handoffs"], value, f"{APP}:ann".encode())
    producer.flush(30)
    expected = [v for v in bad if addressed_to(v, "segment_eval", "handoffs")]

    def letters():
        found = [v for _, v in read_topic(kafka, cfg.topics["dead_letter"])
                 if v["job"] == "segment_eval" and v["topic"] == cfg.topics["handoffs"]]
        return found if len(found) >= len(expected) else None
    found = wait_for("a dead letter for each poison handoff", letters, job)
    assert len(found) == len(expected) and all(d["reason"] for d in found)
    loader.send(kafka, cfg.topics["raw"], [E.track(APP, "eve", "Item1", now())])
    wait_for("eve in watchers", lambda: ("eve", "entered") in {c[:2] for c in changes(kafka, cfg, "watchers")}, job)
    assert job.poll() is None
