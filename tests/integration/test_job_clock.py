"""A per-person job's clock over a topic another job wrote (docs/architecture.md, "Time"):
the records of tracktor.events are in time order per person, not across persons — a writer
may put one app's bundle before another app's earlier records, hours of log time apart in
a replay — so the clock follows the writer's heartbeats alone, and what cart_timeout decides
does not depend on how the apps' records interleave."""
from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest

from tests.conftest import BEGINNING, ONE_MINUTE, make_config, read_topic, start_job, stop_job, wait_for
from tracktor.dev import loader
from tracktor.topics import ensure_topics

pytestmark = pytest.mark.integration
SHOP, VIDEO = "demo-shop", "demo-video"
HOUR = 60 * ONE_MINUTE
TIMEOUT = 20 * ONE_MINUTE  # demo-shop's cart_timeout in tracktor.yaml
CART = {"totalprice": 3.98, "products": [{"name": "Zephir 1kg pack", "price": 1.99, "count": 2}]}


def record(app: str, person: str, kind: str, event: str, t: int, data: dict | None = None) -> dict:
    return {"event_id": f"{person}-{event}-{t}", "app": app, "kind": kind, "event": event, "distinct_id": person,
            "person_id": person, "ts": BEGINNING + t, "received_at": BEGINNING + t, "data": data or {}}


# As identity_merge may write them: the viewer's later record (a bundle of demo-video's) is in
# the topic, and read, before the shopper's earlier purchase (the next bundle). The shopper
# purchases within the cart timeout: no `Cart abandoned`. The leaver's cart is abandoned once
# the clock has passed its due time (so a clock that never moved would fail too).
FIRST = [
    record(VIDEO, "viewer", "track", "Site visit", 0),
    record(SHOP, "shopper", "track", "Site visit", 0),
    record(SHOP, "shopper", "cart", "setCart", 1000, CART),
    record(SHOP, "leaver", "cart", "setCart", 2000, CART),
    record(VIDEO, "viewer", "track", "Site visit", 10 * HOUR),
]
THEN = [record(SHOP, "shopper", "cart", "purchaseCart", 20 * ONE_MINUTE, CART)]


def test_cart_timeout_decides_alike_however_the_apps_records_interleave(kafka, tmp_path_factory):
    """The running job reads FIRST and a heartbeat at the start, then (its clock has had time
    to move) THEN and a heartbeat 11 hours on."""
    from confluent_kafka import Producer

    cfg = make_config(tmp_path_factory.mktemp("clock"), "clock", kafka, bundle_max_records=1).updated(kafka={"partitions": 1})
    ensure_topics(kafka, cfg.kafka, partitions=1)
    topic, producer = cfg.topics["events"], Producer({"bootstrap.servers": kafka, "acks": "all"})

    def send(records):
        for r in records:
            producer.produce(topic, orjson.dumps(r), f"{r['app']}:{r['person_id']}".encode(), timestamp=r["ts"])
        assert producer.flush(30) == 0

    def derived():
        return Counter((v["person_id"], v["event"], v["ts"] - BEGINNING) for _, v in read_topic(kafka, cfg.topics["derived"]))

    loader.send_heartbeat(kafka, topic, BEGINNING)
    send(FIRST)
    job = start_job(cfg, "cart_timeout")
    try:
        wait_for("Visited Site of the viewer's later record", lambda: derived()[("viewer", "Visited Site", 10 * HOUR)], job)
        time.sleep(4)  # more than the bundle delay and a checkpoint: a clock taken from records moves on
        send(THEN)
        loader.send_heartbeat(kafka, topic, BEGINNING + 11 * HOUR)
        wait_for("the leaver's Cart abandoned", lambda: derived()[("leaver", "Cart abandoned", TIMEOUT + 2000)], job)
        time.sleep(4)
        assert derived() == Counter({("viewer", "Visited Site", 0): 1, ("viewer", "Visited Site", 10 * HOUR): 1,
                                     ("shopper", "Visited Site", 0): 1,
                                     ("shopper", "Cart purchased", 20 * ONE_MINUTE): 1,
                                     ("leaver", "Visited Site", 2000): 1,
                                     ("leaver", "Cart abandoned", TIMEOUT + 2000): 1})
    finally:
        stop_job(job)
