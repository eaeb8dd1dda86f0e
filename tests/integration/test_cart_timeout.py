"""cart_timeout on real Kafka and Flink (bounded runs over a scenario): abandoned, canceled,
purchased and restarted carts, a cart across an identify, Visited Site, a disabled advanced
event, an invalid cart; the same derived records at parallelism 1 and 2; and the derived
events counted in ClickHouse like any event."""
from __future__ import annotations

import pytest

import jobs
from tests.conftest import BEGINNING, ONE_MINUTE, ONE_SECOND, make_config, produce, read_topic, run_jobs
from tracktor import warehouse
from tracktor.dev import envelopes as E, loader
from tracktor.flink import runner
from tracktor.topics import ensure_topics

pytestmark = pytest.mark.integration
SHOP, VIDEO = "demo-shop", "demo-video"
TIMEOUT = 2 * ONE_MINUTE
CART = {"totalprice": 3.98, "products": [{"name": "Zephir 1kg pack", "price": 1.99, "count": 2}]}
ANON = "a-3bxuAxl18r02UsdTUdk1Ri9"
GHOST = "merged-earlier"


def at(seconds: float) -> int:
    return BEGINNING + int(seconds * ONE_SECOND)


def scenario() -> list[dict]:
    c = lambda who, action, t, cart=CART: E.cart(SHOP, who, action, cart, t)  # noqa: E731
    return [
        c("abandoner", "set", at(0)),
        c("buyer", "set", at(0)), c("buyer", "purchase", at(30)),
        c("canceler", "set", at(0)), c("canceler", "cancel", at(40)),
        c("editor", "set", at(0)), c("editor", "set", at(90), {**CART, "totalprice": 1.99}),
        # a cart set while anonymous and purchased after identify: one cart of one person
        E.track(SHOP, ANON, "Product view", at(1)), c(ANON, "set", at(2)),
        E.identify(SHOP, "shopper", ANON, at(10)), c("shopper", "purchase", at(20)),
        # visits: a new one after the 30-minute gap only
        E.track(SHOP, "visitor", "Site visit", at(0)), E.track(SHOP, "visitor", "Product view", at(300)),
        E.track(SHOP, "visitor", "Site visit", at(3000)),
        # demo-video has only visited_site enabled in this test: no cart events
        E.cart(VIDEO, "viewer", "set", CART, at(0)),
        # an invalid cart goes to the dead letters; the job goes on
        c("broken", "set", at(5), {"totalprice": "a lot", "products": []}),
    ]


@pytest.fixture(scope="module")
def run(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("carts")
    cfg = make_config(tmp, "carts")
    apps = [a.model_dump() for a in cfg.app_list]
    for a in apps:
        a["cart_timeout"] = TIMEOUT / 1000
        if a["sid"] == VIDEO:
            a["advanced_events"] = ["visited_site"]
    cfg = cfg.updated(apps=apps)
    ensure_topics(kafka, cfg.kafka)
    loader.send(kafka, cfg.topics["raw"], scenario())
    loader.send_heartbeat(kafka, cfg.topics["raw"], at(2 * 3600))  # the clock moves on: nothing else happens
    run_jobs(cfg, kafka, "identity_merge", "cart_timeout")
    derived = {1: [v for _, v in read_topic(kafka, cfg.topics["derived"])]}
    # the handoffs topic the replay at parallelism 2 is configured with is the first run's,
    # with a record an earlier run forwarded to a survivor there: none of it is the replay's
    cart = next(v for _, v in read_topic(kafka, cfg.topics["events"]) if v["person_id"] == "abandoner")
    produce(kafka, cfg.topics["handoffs"], f"{SHOP}:{GHOST}", {
        "job": "cart_timeout", "app": SHOP, "from": "old-id", "to": GHOST, "at": cart["ts"],
        "record": {**cart, "event_id": "forwarded-earlier", "person_id": GHOST, "distinct_id": "old-id"},
        "record_ts": cart["ts"]}, cart["ts"])
    p2 = cfg.updated(flink={"parallelism": 2, "checkpoint_dir": str(tmp / "p2")},
                     kafka={"topics": {"derived": "carts.p2.derived", "dead_letter": "carts.p2.deadletter"}})
    ensure_topics(kafka, p2.kafka)
    runner.run(jobs.load("cart_timeout"), p2, kafka, bounded=True)
    derived[2] = [v for _, v in read_topic(kafka, p2.topics["derived"])]
    run_jobs(cfg, kafka, "metric_rollup")
    return cfg, derived, [v for _, v in read_topic(kafka, cfg.topics["dead_letter"])]


def of(derived, person):
    return sorted((d["event"], d["ts"]) for d in derived if d["person_id"] == person and d["event"] != "Visited Site")


def test_each_cart_gets_what_it_should_and_nothing_more(run):
    _, derived, _ = run
    d = derived[1]
    assert of(d, "abandoner") == [("Cart abandoned", at(0) + TIMEOUT)]
    assert of(d, "buyer") == [("Cart purchased", at(30))]
    assert of(d, "canceler") == [("Cart canceled", at(40))]
    assert of(d, "editor") == [("Cart abandoned", at(90) + TIMEOUT)]
    edited = [x for x in d if x["person_id"] == "editor" and x["event"] == "Cart abandoned"][0]
    assert edited["data"]["cart"]["totalprice"] == 1.99 and edited["data"]["age_ms"] == TIMEOUT


def test_a_cart_across_an_identify_is_one_cart_of_the_identified_person(run):
    _, derived, _ = run
    assert of(derived[1], "shopper") == [("Cart purchased", at(20))]
    assert of(derived[1], ANON) == []  # no Cart abandoned for the anonymous id


def test_visited_site_on_a_new_visit_and_not_within_one(run):
    _, derived, _ = run
    visits = sorted(x["ts"] for x in derived[1] if x["person_id"] == "visitor" and x["event"] == "Visited Site")
    assert visits == [at(0), at(3000)]


def test_a_disabled_advanced_event_is_not_emitted_and_an_invalid_cart_is_a_dead_letter(run):
    cfg, derived, dead = run
    assert [x["event"] for x in derived[1] if x["app"] == VIDEO] == ["Visited Site"]
    mine = [x for x in dead if x["job"] == "cart_timeout"]
    assert len(mine) == 1 and "totalprice must be a number" in mine[0]["reason"]
    assert mine[0]["topic"] == cfg.topics["events"]


def test_the_same_derived_records_at_parallelism_1_and_2(run):
    _, derived, _ = run
    assert sorted(map(str, derived[1])) == sorted(map(str, derived[2]))


def test_a_replay_takes_in_no_handoff_an_earlier_run_wrote(run, kafka):
    """A bounded replay hands over through a topic of its own, deleted at its end: a record
    an earlier run forwarded through the shared one would be decided again, out of its time
    (a Cart abandoned of nobody's cart)."""
    from confluent_kafka.admin import AdminClient

    cfg, derived, _ = run
    assert [d for d in derived[2] if d["person_id"] == GHOST] == []
    topics = AdminClient({"bootstrap.servers": kafka}).list_topics(timeout=30).topics
    assert [t for t in topics if t.startswith(cfg.topics["handoffs"])] == [cfg.topics["handoffs"]]


def test_derived_events_reach_clickhouse_like_any_event(run):
    cfg, derived, _ = run
    client = warehouse.connect(cfg.clickhouse)
    try:
        rows = client.query(f"SELECT event, count() FROM {cfg.clickhouse.database}.events FINAL WHERE kind = 'derived' "
                            "GROUP BY event ORDER BY event").result_rows
    finally:
        client.close()
    expected = {}
    for x in derived[1]:
        expected[x["event"]] = expected.get(x["event"], 0) + 1
    assert dict(rows) == expected and expected["Cart abandoned"] == 2
