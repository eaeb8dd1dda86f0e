"""workflow_runner live, as deployed: a process of its own, killed with SIGKILL while a
person waits in a campaign's one-hour delay, and started again. It resumes from its
checkpoint: the delay fires once the clock passes it, its action is written exactly once,
and delivery calls the webhook once."""
from __future__ import annotations

import threading
import time
from http.server import ThreadingHTTPServer

import pytest
import yaml

from tests.conftest import BEGINNING, ONE_MINUTE, make_config, produce, read_topic, start_job, stop_job, wait_for
from tests.integration.test_workflows import Receiver, wait_until
from tracktor import config
from tracktor.delivery.service import Delivery
from tracktor.dev import loader
from tracktor.topics import ensure_topics

pytestmark = pytest.mark.integration
SHOP = "demo-shop"
HOUR = 60 * ONE_MINUTE


def clock(kafka, cfg, ms):
    """The runner's clock inputs (tracktor.events, .derived) move to `ms`, as their writers' heartbeats would."""
    for role in ("events", "derived"):
        loader.send_heartbeat(kafka, cfg.topics[role], ms)


@pytest.fixture(scope="module")
def live(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workflows-live")
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    cfg = make_config(tmp, "wf-live", bootstrap_servers=kafka)
    tree = yaml.safe_load(cfg.path.read_text())
    for app in tree["apps"]:
        if app["sid"] == SHOP:
            app["campaigns"] = {"follow_up": {"trigger": {"event": "Checkout started"}, "start": "wait", "blocks": {
                "wait": {"wait": "1h", "next": "hook"},
                "hook": {"webhook": {"url": f"http://127.0.0.1:{hook.server_port}/follow-up",
                                     "payload": {"who": "{{person_id}}"}}}}}}
    cfg.path.write_text(yaml.safe_dump(tree))
    cfg = config.load(cfg.path)
    ensure_topics(kafka, cfg.kafka)
    yield cfg
    hook.shutdown()


def steps(kafka, cfg):
    return [r for _, r in read_topic(kafka, cfg.topics["derived"]) if r["event"] == "Campaign step"]


def follow_ups(kafka, cfg):
    return [r for _, r in read_topic(kafka, cfg.topics["actions"]) if r["campaign"] == "follow_up"]


def test_a_delay_survives_a_kill_and_fires_once_after_the_restart(live, kafka):
    cfg = live
    event = {"event_id": "checkout-1", "app": SHOP, "kind": "track", "event": "Checkout started", "distinct_id": "dan",
             "person_id": "dan", "ts": BEGINNING, "received_at": BEGINNING, "data": {}}
    produce(kafka, cfg.topics["events"], f"{SHOP}:dan", event, BEGINNING)
    clock(kafka, cfg, BEGINNING + ONE_MINUTE)
    runner = start_job(cfg, "workflow_runner")
    try:
        # dan is in the delay, and the checkpoint that holds it is complete (its output is committed)
        wait_for("dan waiting in the delay", lambda: [s for s in steps(kafka, cfg) if s["data"]["block"] == "wait"],
                 runner, seconds=180)
        assert not follow_ups(kafka, cfg)
    finally:
        stop_job(runner)  # SIGKILL: as if the machine died
    Receiver.calls.clear()
    clock(kafka, cfg, BEGINNING + 2 * HOUR)
    restarted = start_job(cfg, "workflow_runner")
    try:
        found = wait_for("the follow-up after the restart", lambda: follow_ups(kafka, cfg), restarted, seconds=180)
        time.sleep(6)  # another checkpoint or two: a second one would be committed by now
        assert len(follow_ups(kafka, cfg)) == 1
        assert found[0]["ts"] == BEGINNING + HOUR and found[0]["webhook"]["payload"] == {"who": "dan"}
        assert len([s for s in steps(kafka, cfg) if s["data"]["block"] == "wait"]) == 1
    finally:
        stop_job(restarted)
    delivery = Delivery(cfg, kafka).start()
    try:
        wait_until(lambda: Receiver.calls, what="the webhook call")
        time.sleep(2)
    finally:
        delivery.stop()
    assert [body["data"] for _, body in Receiver.calls] == [{"who": "dan"}]
