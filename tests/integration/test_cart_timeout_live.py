"""cart_timeout live, as deployed: the collector (with its heartbeats), identity_merge and
cart_timeout as processes of their own. An app that goes quiet still gets its abandoned
cart (time comes from the heartbeats, not from further events); a job killed with SIGKILL
between setCart and the timeout and restarted from its checkpoint emits `Cart abandoned`
exactly once; a bounded replay of the same events gives the same derived records."""
from __future__ import annotations

import json
import time
import urllib.request

import pytest
import yaml

import jobs
from tests.conftest import make_config, read_topic, start_job, stop_job, wait_for
from tracktor import config
from tracktor.collector.server import Collector
from tracktor.flink import runner
from tracktor.topics import caught_up, ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.faults]  # a job SIGKILLed mid-state: the second tier
SHOP = "demo-shop"
TIMEOUT_S = 8
CART = {"totalprice": 3.98, "products": [{"name": "Tea sampler", "price": 1.99, "count": 2}]}


def call(collector, calls):
    req = urllib.request.Request(f"{collector.address}/batch?sid={SHOP}", data=json.dumps(calls).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200


def cart(who: str) -> dict:
    return {"method": "setCart", "ts": int(time.time() * 1000), "id": who, "cart": CART}


def derived(kafka, cfg, topic=None):
    return [v for _, v in read_topic(kafka, topic or cfg.topics["derived"])]


def abandoned(kafka, cfg, who):
    return [d for d in derived(kafka, cfg) if d["person_id"] == who and d["event"] == "Cart abandoned"]


@pytest.fixture(scope="module")
def live(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("carts-live")
    cfg = make_config(tmp, "carts-live", bootstrap_servers=kafka)
    tree = yaml.safe_load(cfg.path.read_text())
    for app in tree["apps"]:
        app["cart_timeout"] = f"{TIMEOUT_S}s"
    cfg.path.write_text(yaml.safe_dump(tree))
    cfg = config.load(cfg.path)
    ensure_topics(kafka, cfg.kafka)
    collector = Collector(cfg, kafka, port=0).start()
    merge, carts = start_job(cfg, "identity_merge"), start_job(cfg, "cart_timeout")
    try:
        yield cfg, collector, merge, carts
    finally:
        stop_job(merge)
        stop_job(carts)
        collector.stop()


def test_an_app_that_goes_quiet_still_gets_its_abandoned_cart(live, kafka):
    cfg, collector, merge, carts = live
    call(collector, [cart("quiet-shopper")])
    # nothing more is sent by anyone: only the collector's heartbeats move the clock on
    found = wait_for("Cart abandoned for the quiet shopper", lambda: abandoned(kafka, cfg, "quiet-shopper"), carts,
                     seconds=180)
    assert len(found) == 1 and found[0]["data"]["cart"] == CART


def test_a_job_killed_before_the_timeout_and_restarted_emits_cart_abandoned_exactly_once(live, kafka):
    cfg, collector, merge, carts = live
    call(collector, [cart("killed-shopper")])
    # its Visited Site is committed: the checkpoint after the setCart is done, the timer pending
    wait_for("the shopper's visit", lambda: [d for d in derived(kafka, cfg) if d["person_id"] == "killed-shopper"],
             carts, seconds=120)
    assert not abandoned(kafka, cfg, "killed-shopper")
    stop_job(carts)  # SIGKILL, between the setCart and its timeout
    restarted = start_job(cfg, "cart_timeout")
    try:
        wait_for("Cart abandoned after the restart", lambda: abandoned(kafka, cfg, "killed-shopper"), restarted,
                 seconds=180)
        time.sleep(TIMEOUT_S)  # a second one would have come by now
        assert len(abandoned(kafka, cfg, "killed-shopper")) == 1
        assert len(abandoned(kafka, cfg, "quiet-shopper")) == 1
    finally:
        # identity_merge stops first; cart_timeout reads to the end of what it wrote, then stops
        stop_job(merge)
        job = jobs.load("cart_timeout")
        groups = {cfg.topics[r]: job.group_id(r) for r in job.inputs}
        deadline = time.monotonic() + 120
        while not caught_up(kafka, groups) and time.monotonic() < deadline and restarted.poll() is None:
            time.sleep(2)
        stop_job(restarted)


def test_a_bounded_replay_gives_the_records_of_the_live_run(live, kafka):
    cfg, *_ = live
    replay = cfg.updated(kafka={"topics": {"derived": "carts-live.replay.derived", "handoffs": "carts-live.replay.handoffs",
                                           "dead_letter": "carts-live.replay.deadletter"}})
    ensure_topics(kafka, replay.kafka)
    runner.run(jobs.load("cart_timeout"), replay, kafka, bounded=True)
    got = sorted(json.dumps(d, sort_keys=True) for d in derived(kafka, replay))
    expected = sorted(json.dumps(d, sort_keys=True) for d in derived(kafka, cfg))
    assert got == expected and any('"Cart abandoned"' in d for d in got)
