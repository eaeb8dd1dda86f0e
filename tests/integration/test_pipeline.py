"""End to end on real components: raw calls on a real broker, the real Flink jobs on a local
mini-cluster, answers read from real ClickHouse (chDB).

The jobs run once for the module (each run costs a mini-cluster start); the tests then look
at what they produced from several angles.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timezone
from types import SimpleNamespace

import jsonschema
import pytest

from tests import reference
from tests.conftest import run_jobs, BEGINNING, ONE_DAY, ONE_MINUTE, make_config, read_topic
from tests.test_schemas import SCHEMAS
from tracktor.analytics import queries as analytics
from tracktor.topics import ensure_topics
from tracktor.dev import envelopes as E, loader
from tracktor import warehouse
from tracktor.config import Criterion, Funnel
from tracktor.dev.sample_data import Generator

pytestmark = pytest.mark.integration

APP = "t-video"
STEPS = ("Site visit", "Free movie view", "Registration", "Upgrade to Premium")


def scenario() -> list[dict]:
    """Five people through the video funnel, two of them only whole after a merge."""
    out = []

    def at(minute):
        return BEGINNING + minute * ONE_MINUTE

    # u1 browses anonymously, then identifies: the anonymous steps count for u1
    out += [E.track(APP, "a-anon1", "Site visit", at(0)), E.track(APP, "a-anon1", "Free movie view", at(1)),
            E.identify(APP, "u1", "a-anon1", at(2)), E.track(APP, "u1", "Registration", at(3)),
            E.track(APP, "u1", "Upgrade to Premium", at(4))]
    # legacy2 and u2 are aliased after all their events were sent
    out += [E.track(APP, "legacy2", "Site visit", at(10)), E.track(APP, "legacy2", "Free movie view", at(11)),
            E.set_properties(APP, "legacy2", {"city": "Paris", "email": "old2@example.com"}, at(11)),
            E.track(APP, "u2", "Registration", at(12)),
            E.set_properties(APP, "u2", {"email": "u2@example.com", "tags": ["a", "b"]}, at(12)),
            E.alias(APP, "legacy2", "u2", at(20))]
    # u3: A -> B -> D stops after B
    out += [E.track(APP, "u3", s, at(30 + i)) for i, s in enumerate(["Site visit", "Free movie view", "Upgrade to Premium"])]
    # u4: A -> B -> C -> E -> D converts (loose ordering)
    out += [E.track(APP, "u4", s, at(40 + i)) for i, s in
            enumerate(["Site visit", "Free movie view", "Registration", "Rated movie", "Upgrade to Premium"])]
    # u5: only visits; an email that is not a string is rejected, the rest kept
    out += [E.track(APP, "u5", "Site visit", at(50)),
            E.set_properties(APP, "u5", {"email": 42, "age": 31, "gone": "x"}, at(51)),
            E.set_properties(APP, "u5", {"gone": None}, at(52))]
    # a chain of three merges and a cycle
    out += [E.track(APP, c, "Rated movie", at(60 + i)) for i, c in enumerate(["c1", "c2", "c3", "c4"])]
    out += [E.alias(APP, "c1", "c2", at(70)), E.alias(APP, "c2", "c3", at(71)), E.alias(APP, "c3", "c4", at(72))]
    out += [E.track(APP, "y1", "Rated movie", at(80)), E.track(APP, "y2", "Rated movie", at(81)),
            E.alias(APP, "y1", "y2", at(82)), E.alias(APP, "y2", "y1", at(83))]
    # u6: the second step at the very same moment as the first follows it (whole-second timestamps)
    out += [E.track(APP, "u6", "Site visit", at(90)), E.track(APP, "u6", "Free movie view", at(90))]
    # the same ids in another app must stay apart from these
    out += [E.track("t-other", "a-anon1", "Site visit", at(0)), E.identify("t-other", "u3", "a-anon1", at(1))]
    return out


BROKEN = ["{this is not json", json.dumps({"type": "track", "app": APP}), json.dumps([1, 2, 3])]


@pytest.fixture(scope="module")
def run(kafka, tmp_path_factory):
    cfg = make_config(tmp_path_factory.mktemp("pipeline"), "it")
    ensure_topics(kafka, cfg.kafka)
    generated = list(Generator(seed=42, people=150, start_ms=BEGINNING, days=3))
    envs = scenario() + generated
    loader.send(kafka, cfg.topics["raw"], envs)
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=kafka, acks="all")
    for text in BROKEN:
        p.send(cfg.topics["raw"], key=b"broken", value=text.encode())
    p.send(cfg.topics["raw"], key=None, value=json.dumps(E.track(APP, "keyless", "Site visit", BEGINNING)).encode())
    p.flush()
    p.close()

    run_jobs(cfg, kafka)

    topics = {role: read_topic(kafka, cfg.topics[role]) for role in ("events", "identities", "profiles", "dead_letter")}
    client = warehouse.connect(cfg.clickhouse)
    yield SimpleNamespace(cfg=cfg, envs=envs, topics=topics, client=client, db=cfg.clickhouse.database)
    client.close()


def funnel(run, app, steps, window=None, first=date(2026, 1, 1), last=date(2026, 1, 5)):
    return analytics.funnel(run.client, run.db, app, Funnel.of("f", tuple(steps), window), first, last)


def test_the_funnel_counts_merged_ids_as_one_person_with_their_events_from_before_the_merge(run):
    steps = funnel(run, APP, STEPS)
    assert [s.people for s in steps] == [6, 5, 3, 2]

    def people(step):
        return [p.person for p in analytics.funnel_people(run.client, run.db, APP, Funnel.of("f", STEPS, None),
                                                          date(2026, 1, 1), date(2026, 1, 5), step)]
    assert people(4) == ["u1", "u4"]                  # a-anon1's first two steps joined u1's last two
    assert "u2" in people(3)                          # legacy2's steps joined u2's Registration
    assert not {"a-anon1", "legacy2"} & set(people(1))


def test_generated_streams_match_the_plain_python_reference(run):
    start, end = BEGINNING, BEGINNING + 5 * ONE_DAY
    for app, steps in (("demo-video", STEPS), ("demo-shop", ("Site visit", "Product view", "setCart", "purchaseCart"))):
        expected = reference.funnel(run.envs, app, list(steps), start, end, end - start)
        assert [s.people for s in funnel(run, app, steps)] == expected, app
        assert expected[-1] > 0


def test_every_resolved_event_and_property_set_arrives_once(run):
    events = [v for _, v in run.topics["events"] if v["kind"] != "merge"]
    calls = [e for e in run.envs if e["type"] in ("track", "cart", "set")]
    assert sorted(e["event_id"] for e in events) == sorted(e["event_id"] for e in calls)
    stored = run.client.query(f"SELECT count() FROM {run.db}.events FINAL WHERE kind != 'derived'").result_rows[0][0]
    assert stored == sum(1 for e in calls if e["type"] != "set")
    sets = run.client.query(f"SELECT count() FROM {run.db}.property_sets FINAL").result_rows[0][0]
    assert sets == sum(1 for app in {e["app"] for e in calls}
                       for _ in reference.property_sets(run.envs, app, BEGINNING + 100 * ONE_DAY))


def test_identity_records_end_on_the_reference_persons(run):
    who = reference.persons(run.envs)
    latest = {}
    for _, rec in run.topics["identities"]:
        k = (rec["app"], rec["distinct_id"])
        if k not in latest or rec["version"] > latest[k]["version"]:
            latest[k] = rec
    assert latest and all(rec["person_id"] == who[k] for k, rec in latest.items())
    merged = {k for k, p in who.items() if p != k[1]}
    assert merged == {k for k, rec in latest.items() if rec["person_id"] != k[1]}
    # tenant isolation: t-other's a-anon1 became its own u3, not t-video's u1
    assert latest[("t-other", "a-anon1")]["person_id"] == "u3"
    assert latest[(APP, "a-anon1")]["person_id"] == "u1"


def test_profiles_are_merged_latest_value_wins_and_null_deletes(run):
    rows = run.client.query(
        f"SELECT person_id, properties, merged_into FROM {run.db}.persons FINAL WHERE app = {{app:String}}",
        parameters={"app": APP}).result_rows
    persons = {p: (json.loads(props), into) for p, props, into in rows}
    assert persons["u2"] == ({"city": "Paris", "email": "u2@example.com", "tags": ["a", "b"]}, None)
    assert persons["legacy2"] == ({}, "u2")
    assert persons["u5"] == ({"age": 31}, None)


def test_bad_records_go_to_the_dead_letter_topic_with_a_reason_and_the_job_goes_on(run):
    dead = [v for _, v in run.topics["dead_letter"]]
    reasons = " | ".join(d["reason"] for d in dead)
    assert len(dead) == len(BROKEN) + 2
    assert "not JSON" in reasons and "event_id" in reasons and "not a JSON object" in reasons
    assert f"record keyed None is for app {APP!r}" in reasons  # a record with no key at all
    assert "'email' must be a string" in reasons


def test_every_record_on_the_output_topics_matches_its_schema(run):
    for role, records in run.topics.items():
        v = jsonschema.Draft202012Validator(SCHEMAS[run.cfg.topics[role].removeprefix("it.")])
        for key, value in records:
            v.validate(value)
            if role in ("events", "profiles"):
                assert key == f"{value['app']}:{value['person_id']}"
            elif role == "identities":
                assert key == f"{value['app']}:{value['distinct_id']}"


@pytest.mark.parametrize("app, event", [("demo-video", "Site visit"), ("demo-shop", "Product view"), (APP, "Rated movie")])
def test_event_metrics_match_the_reference_day_by_day(run, app, event):
    from tracktor.config import metric_from
    days = [reference.event_day(run.envs, app, event, BEGINNING + i * ONE_DAY, BEGINNING + (i + 1) * ONE_DAY) for i in range(5)]

    def metric(mtype):
        return analytics.metric(run.client, run.db, app, metric_from("m", {"type": mtype, "event": event}), date(2026, 1, 1), date(2026, 1, 5))
    people, times, avg = metric("people_did_event"), metric("times_event_happened"), metric("avg_times_per_person")
    assert [v for _, v in people.days] == [p for p, _ in days]
    assert [v for _, v in times.days] == [t for _, t in days]
    assert [v for _, v in avg.days] == [pytest.approx(t / p) if p else None for p, t in days]
    assert people.people == reference.people_did(run.envs, app, event, BEGINNING, BEGINNING + 5 * ONE_DAY) > 0
    assert times.total == sum(t for _, t in days) and days.count((0, 0)) >= 1  # a day without events


def test_a_chain_of_three_merges_and_a_cycle_each_end_as_one_person(run):
    rows = run.client.query(
        f"SELECT distinct_id, person FROM {run.db}.person_events(app = {{app:String}}, from_ts = {{f:DateTime64(3, 'UTC')}},"
        f" to_ts = {{t:DateTime64(3, 'UTC')}}) WHERE event = 'Rated movie'",
        parameters={"app": APP, "f": datetime(2026, 1, 1, tzinfo=timezone.utc), "t": datetime(2026, 1, 2, tzinfo=timezone.utc)},
    ).result_rows
    person = dict(rows)
    assert {person[c] for c in ("c1", "c2", "c3", "c4")} == {"c4"}
    assert person["y1"] == person["y2"] == "y2"  # y1 -> y2 came first; y2 -> y1 changes nothing


@pytest.mark.parametrize("app, a, b", [("demo-video", "Registration", "Upgrade to Premium"),
                                       ("demo-shop", "setCart", "purchaseCart")])
def test_conversion_and_time_between_match_the_reference(run, app, a, b):
    from tracktor.config import metric_from
    start, end = BEGINNING, BEGINNING + 5 * ONE_DAY
    first, last = date(2026, 1, 1), date(2026, 1, 5)
    for repeatable in (False, True):
        m = analytics.metric(run.client, run.db, app, metric_from("c", {
                             "type": "conversion_rate", "event_a": a, "event_b": b, "repeatable": repeatable}), first, last)
        assert m.total == pytest.approx(reference.conversion(run.envs, app, a, b, start, end, repeatable))
    people, seconds = reference.time_between(run.envs, app, a, b, start, end)
    m = analytics.metric(run.client, run.db, app, metric_from("t", {"type": "avg_time_between", "event_a": a, "event_b": b}), first, last)
    assert (m.people, m.total) == (people, pytest.approx(seconds))
    assert people > 0


@pytest.mark.parametrize("app, prop, criteria", [
    ("demo-video", "age", ()),
    ("demo-video", "age", (Criterion(property="plan", op="eq", value="premium"), Criterion(property="city", op="ne", value="Paris"))),
    ("demo-shop", "total_spent", (Criterion(property="age", op="lt", value=40),)),
])
def test_property_totals_match_the_reference_day_by_day(run, app, prop, criteria):
    from tracktor.config import metric_from
    m = analytics.metric(run.client, run.db, app, metric_from("t", {"type": "total_property_value", "property": prop, "criteria": criteria}),
                         date(2026, 1, 1), date(2026, 1, 5))
    expected = [reference.property_total(run.envs, app, prop, criteria, BEGINNING + (i + 1) * ONE_DAY)[0] for i in range(5)]
    assert [v for _, v in m.days] == pytest.approx(expected)
    assert m.people == reference.property_total(run.envs, app, prop, criteria, BEGINNING + 5 * ONE_DAY)[1] > 0


@pytest.mark.parametrize("divide_by, event", [("people", None), ("event_people", "Upgrade to Premium"), ("sets", None)])
def test_property_averages_match_the_reference_day_by_day(run, divide_by, event):
    from tracktor.config import metric_from
    params = {"property": "age", "divide_by": divide_by, **({"event": event} if event else {})}
    m = analytics.metric(run.client, run.db, "demo-video", metric_from("a", {"type": "average_property_value", **params}),
                         date(2026, 1, 1), date(2026, 1, 5))
    expected = []
    for i in range(5):
        until = BEGINNING + (i + 1) * ONE_DAY
        total = reference.property_total(run.envs, "demo-video", "age", (), until)[0]
        divisor = reference.property_divisor(run.envs, "demo-video", "age", divide_by, event, until)
        expected.append(total / divisor if divisor else None)
    assert [v for _, v in m.days] == [pytest.approx(v) if v is not None else None for v in expected]
    assert any(expected)
