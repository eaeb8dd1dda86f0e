"""segment_eval on real Kafka, Flink and ClickHouse over a scenario through the whole pipeline
(identity_merge -> cart_timeout -> segment_eval -> metric_rollup): the seed's segments, a
window that expires with no further event, a merge that moves a person into a segment
(handed over across subtasks), a segment on a derived event; the same final membership at
parallelism 1 and 2 and equal to the reference; the same records on a replay; the members
in ClickHouse and in `report segment`."""
from __future__ import annotations

import json
from datetime import date

import pytest
import yaml

import jobs
from tests.conftest import BEGINNING, ONE_DAY, ONE_MINUTE, make_config, read_topic, run_jobs
from tracktor import config, warehouse
from tracktor.analytics import queries as analytics
from tracktor.dev import envelopes as E, loader
from tracktor.flink import runner
from tracktor.topics import ensure_topics

pytestmark = pytest.mark.integration
APP = "demo-video"
ANON = "a-3bxuAxl18r02UsdTUdk1Ri9"
SEGMENTS = {
    "item1": {"where": {"event": "Item1"}},
    "adults": {"where": {"property": "age", "op": "gte", "value": 25}},
    "big_cities": {"where": {"property": "city", "op": "in", "value": ["New York", "London"]}},
    "basic": {"where": {"property": "plan", "op": "eq", "value": "Basic"}},
    "tire_buyers": {"where": {"event": "purchase", "where": [{"property": "category", "op": "eq", "value": "tires"}],
                              "within": "60d"}},
    "regulars": {"where": {"event": "purchase", "at_least": 5}},
    "abandoners": {"where": {"event": "Cart abandoned", "within": "7d"}},
}


def at(minutes: float) -> int:
    return BEGINNING + int(minutes * ONE_MINUTE)


def scenario() -> list[dict]:
    t = E.track
    out = [
        t(APP, "ann", "Item1", at(0)),
        E.set_properties(APP, "ann", {"age": 31, "city": "London", "plan": "Basic"}, at(1)),
        E.set_properties(APP, "bob", {"age": 24, "city": "Paris", "plan": "Basic"}, at(1)),
        E.set_properties(APP, "bob", {"plan": "Gold"}, at(5)),             # leaves basic
        t(APP, "tyre", "purchase", at(2), {"category": "tires"}),          # leaves tire_buyers 60 days later
        t(APP, "tyre", "purchase", at(3), {"category": "books"}),
        E.cart(APP, "cart-left", "set", {"totalprice": 5, "products": []}, at(4)),  # becomes Cart abandoned
    ]
    # three purchases while anonymous, identify, two more: a regular only as one person
    out += [t(APP, ANON, "purchase", at(10 + i)) for i in range(3)]
    out += [E.identify(APP, "unicorn", ANON, at(20))]
    out += [t(APP, "unicorn", "purchase", at(21 + i)) for i in range(2)]
    # many people, so that the two subtasks share them
    out += [t(APP, f"p{i}", "Item1", at(30 + i)) for i in range(40)]
    return out


EXPECTED = {  # final membership, after the clock passed 70 days
    "item1": {"ann"} | {f"p{i}" for i in range(40)},
    "adults": {"ann"}, "big_cities": {"ann"}, "basic": {"ann"},
    "tire_buyers": set(), "regulars": {"unicorn"}, "abandoners": set(),
}


def with_segments(cfg):
    tree = yaml.safe_load(cfg.path.read_text())
    for app in tree["apps"]:
        app["segments"] = SEGMENTS if app["sid"] == APP else {}
        app["cart_timeout"] = "10m"
    cfg.path.write_text(yaml.safe_dump(tree))
    return config.load(cfg.path)


def membership(records) -> dict[str, set[str]]:
    last = {}
    for r in sorted(records, key=lambda r: r["version"]):
        last[(r["segment"], r["person_id"])] = r["change"]
    out = {s: set() for s in SEGMENTS}
    for (segment, person), change in last.items():
        if change == "entered":
            out[segment].add(person)
    return out


@pytest.fixture(scope="module")
def run(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("segments")
    cfg = with_segments(make_config(tmp, "segments"))
    ensure_topics(kafka, cfg.kafka)
    loader.send(kafka, cfg.topics["raw"], scenario())
    loader.send_heartbeat(kafka, cfg.topics["raw"], at(30 * 24 * 60))  # a month on: tyre still a tire buyer
    run_jobs(cfg, kafka, "identity_merge", "cart_timeout", "segment_eval")
    month = [v for _, v in read_topic(kafka, cfg.topics["segments"])]
    for role in ("events", "derived"):  # 70 days on, and nothing else happens
        loader.send_heartbeat(kafka, cfg.topics[role], at(70 * 24 * 60))
    runs = {}
    for parallelism in (1, 2, "replay"):
        name = f"p{parallelism}"
        c = cfg.updated(flink={"parallelism": 2 if parallelism == 2 else 1, "checkpoint_dir": str(tmp / name)},
                        kafka={"topics": {"segments": f"segments.{name}.segments", "handoffs": f"segments.{name}.handoffs",
                                          "dead_letter": f"segments.{name}.deadletter"}})
        ensure_topics(kafka, c.kafka)
        runner.run(jobs.load("segment_eval"), c, kafka, bounded=True)
        runs[parallelism] = (c, [v for _, v in read_topic(kafka, c.topics["segments"])])
    run_jobs(runs[1][0], kafka, "metric_rollup")
    return cfg, month, runs


def test_the_seeds_segments_a_merge_and_a_derived_event(run):
    _, month, _ = run
    got = membership(month)
    assert got["item1"] >= {"ann", "p0", "p39"} and got["adults"] == {"ann"} and got["big_cities"] == {"ann"}
    assert got["basic"] == {"ann"}  # bob entered, then left when his plan changed
    assert ("basic", "bob", "exited") in {(r["segment"], r["person_id"], r["change"]) for r in month}
    assert got["tire_buyers"] == {"tyre"} and got["regulars"] == {"unicorn"}
    abandoned = [(r["change"], r["ts"], r["cause"]) for r in month if r["segment"] == "abandoners"]
    entered_at = at(4) + 10 * ONE_MINUTE  # the Cart abandoned event, 10 minutes after the cart was set
    assert [a[:2] for a in abandoned] == [("entered", entered_at), ("exited", (entered_at // ONE_DAY + 7) * ONE_DAY)]
    assert abandoned[1][2] == {"reason": "time"} and all(r["person_id"] == "cart-left" for r in month
                                                          if r["segment"] == "abandoners")
    merged_away = [r for r in month if r["person_id"] == ANON]
    assert all(r["segment"] != "regulars" for r in merged_away)  # three purchases alone are not five


def test_windows_expire_with_no_further_event(run):
    _, month, runs = run
    final = membership(runs[1][1])
    assert final["tire_buyers"] == set() and final["abandoners"] == set()
    exits = [r for r in runs[1][1] if r["segment"] == "tire_buyers" and r["change"] == "exited"]
    assert len(exits) == 1 and exits[0]["cause"] == {"reason": "time"}
    assert exits[0]["ts"] == (at(2) // ONE_DAY + 60) * ONE_DAY  # the day the purchase left the 60 days


def test_the_same_final_membership_at_parallelism_1_and_2_equal_to_the_reference(run):
    _, _, runs = run
    assert membership(runs[1][1]) == membership(runs[2][1]) == EXPECTED


def test_a_replay_at_the_same_parallelism_gives_the_same_records(run):
    _, _, runs = run
    def key(r):
        return json.dumps(r, sort_keys=True)
    assert sorted(map(key, runs[1][1])) == sorted(map(key, runs["replay"][1]))


def test_members_land_in_clickhouse_and_report_segment_lists_them(run):
    cfg = run[2][1][0]  # metric_rollup ran on the parallelism-1 run's topics
    client = warehouse.connect(cfg.clickhouse)
    try:
        item1 = analytics.segment(client, cfg.clickhouse.database, APP, "item1", date(2026, 1, 1), date(2026, 1, 3))
        basic = analytics.segment(client, cfg.clickhouse.database, APP, "basic", date(2026, 1, 1), date(2026, 1, 1))
        tires = analytics.segment(client, cfg.clickhouse.database, APP, "tire_buyers", date(2026, 1, 1), date(2026, 3, 31))
    finally:
        client.close()
    assert item1.count == 41 and [n for _, n in item1.days] == [41, 41, 41]
    assert {m.person for m in basic.members} == {"ann"} and basic.members[0].properties["city"] == "London"
    assert tires.count == 0 and dict(tires.days)[date(2026, 1, 1)] == 1 and dict(tires.days)[date(2026, 3, 31)] == 0
