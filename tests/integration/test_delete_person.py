"""Deleting a person (`tracktor people delete APP ID`), through the whole pipeline on real
Kafka, Flink and ClickHouse: the delete call goes on tracktor.raw after the person's history
(three ids, properties, events, a cart still open, segments); identity_merge forgets them and
tombstones their keys, segment_eval lets them out of every segment, cart_timeout drops their
cart, metric_rollup removes their rows. Nothing of them remains in any table, while the
person next to them is untouched and an id taken up again after the deletion is a new person."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from tests.conftest import BEGINNING, ONE_MINUTE, clean_env, make_config, read_topic, run_jobs
from tracktor import ROOT, config, warehouse
from tracktor.analytics.api import Api
from tracktor.dev import envelopes as E, loader
from tracktor.topics import ensure_topics

pytestmark = pytest.mark.integration
APP = "demo-shop"
ANON = "a-0000000000000000000ann1"
ANN_IDS = {ANON, "ann", "ann-old"}


def at(minutes: float) -> int:
    return BEGINNING + int(minutes * ONE_MINUTE)


def history(who: str, anon: str | None, t: float) -> list[dict]:
    out = [E.set_properties(APP, anon or who, {"email": f"{who}@example.com", "plan": "gold"}, at(t)),
           E.track(APP, anon or who, "purchase", at(t + 1), {"price": 5})]
    if anon:
        out.append(E.identify(APP, who, anon, at(t + 2)))
    return out + [E.track(APP, who, "purchase", at(t + 3), {"price": 7}),
                  E.cart(APP, who, "set", {"totalprice": 9, "products": []}, at(t + 4))]


@pytest.fixture(scope="module")
def run(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("delete")
    cfg = make_config(tmp, "delete", bootstrap_servers=kafka)
    tree = yaml.safe_load(cfg.path.read_text())
    for app in tree["apps"]:
        app["segments"] = {"buyers": {"where": {"event": "purchase", "at_least": 2}},
                           "gold": {"where": {"property": "plan", "op": "eq", "value": "gold"}}}
        app["cart_timeout"] = "30m"
    cfg.path.write_text(yaml.safe_dump(tree))
    cfg = config.load(cfg.path)
    ensure_topics(kafka, cfg.kafka)
    loader.send(kafka, cfg.topics["raw"], history("ann", ANON, 0) + [E.alias(APP, "ann-old", "ann", at(6))]
                + history("bob", None, 0) + history("cy", None, 0))
    api = Api(cfg, port=0).start()
    try:  # cy through the API
        req = urllib.request.Request(f"{api.address}/api/v1/apps/{APP}/people/cy", method="DELETE",
                                     headers={"Authorization": f"Bearer {cfg.apps[APP].admin_token}"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status == 202
    finally:
        api.stop()
    done = subprocess.run([sys.executable, "-m", "tracktor.cli", "--config", str(cfg.path), "people", "delete", APP,
                           "ann-old"], cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # after the deletion (the command's time: now), the id "ann" comes back: a new person
    later = E.track(APP, "ann", "purchase", int(time.time() * 1000) + 60_000)
    loader.send(kafka, cfg.topics["raw"], [later])
    loader.send_heartbeat(kafka, cfg.topics["raw"], later["received_at"] + 3_600_000)
    run_jobs(cfg, kafka)
    return cfg, later


def rows_naming(cfg, ids) -> dict[str, int]:
    """Rows naming one of `ids` in each table of the warehouse that names people."""
    client = warehouse.connect(cfg.clickhouse)
    db = cfg.clickhouse.database
    try:
        tables = {}
        for (table,) in client.query(
                "SELECT DISTINCT table FROM system.columns WHERE database = {db:String} AND name IN "
                "('distinct_id', 'person_id') AND table IN (SELECT name FROM system.tables WHERE "
                "database = {db:String} AND engine LIKE '%MergeTree')", parameters={"db": db}).result_rows:
            names = {c for (c,) in client.query("SELECT name FROM system.columns WHERE database = {db:String} AND "
                                                "table = {t:String}", parameters={"db": db, "t": table}).result_rows}
            which = " OR ".join(f"{c} IN {{ids:Array(String)}}" for c in ("distinct_id", "person_id", "merged_into")
                                if c in names)
            tables[table] = client.query(f"SELECT count() FROM {db}.{table} WHERE {which}",
                                         parameters={"ids": sorted(ids)}).result_rows[0][0]
        return tables
    finally:
        client.close()


def test_nothing_of_the_deleted_person_remains_in_any_table(run):
    cfg, later = run
    assert not any(rows_naming(cfg, {"cy"}).values())  # deleted through the API
    before = rows_naming(cfg, ANN_IDS - {"ann"})
    assert set(before) >= {"events", "identities", "persons", "property_sets", "segment_changes", "event_daily"}
    assert not any(before.values()), before
    client = warehouse.connect(cfg.clickhouse)
    try:
        ann = client.query(f"SELECT event_id, person_id, toUnixTimestamp64Milli(received_at) FROM "
                           f"{cfg.clickhouse.database}.events WHERE distinct_id = 'ann' OR person_id = 'ann'").result_rows
        props = client.query(f"SELECT count() FROM {cfg.clickhouse.database}.persons WHERE person_id = 'ann'").result_rows
    finally:
        client.close()
    # only the new person's purchase, and the visit it starts
    assert sorted(ann) == [(later["event_id"], "ann", later["received_at"]),
                           (later["event_id"] + ":visit", "ann", later["received_at"])]
    assert props == [(0,)]


def test_the_person_next_to_them_is_untouched(run):
    cfg, _ = run
    bob = rows_naming(cfg, {"bob"})
    assert bob["events"] >= 3 and bob["persons"] == 1 and bob["segment_changes"] == 2 and bob["property_sets"] == 2


def test_segment_eval_lets_them_out_and_their_cart_is_never_abandoned(run, kafka):
    cfg, _ = run
    changes = [(r["segment"], r["change"], r["cause"]) for _, r in read_topic(kafka, cfg.topics["segments"])
               if r["person_id"] == "ann"]
    assert sorted(c[:2] for c in changes) == [("buyers", "entered"), ("buyers", "exited"), ("gold", "entered"),
                                              ("gold", "exited")]  # the new ann's one purchase makes no buyer
    assert [c[2] for c in changes[-2:]] == [{"reason": "deleted"}] * 2
    derived = [r["event"] for _, r in read_topic(kafka, cfg.topics["derived"]) if r["person_id"] in ANN_IDS]
    assert "Cart abandoned" not in derived
    assert "Cart abandoned" in [r["event"] for _, r in read_topic(kafka, cfg.topics["derived"]) if r["person_id"] == "bob"]


def test_identity_merge_tombstones_every_key_of_theirs(run, kafka):
    cfg, _ = run
    for role in ("identities", "profiles"):
        last = {}
        for key, value in read_topic(kafka, cfg.topics[role]):
            last[key] = value
        for i in ANN_IDS - {"ann"}:
            assert last.get(f"{APP}:{i}", "absent") in (None, "absent"), (role, i, last.get(f"{APP}:{i}"))
        assert f"{APP}:{ANON}" in last and last[f"{APP}:{ANON}"] is None


def test_a_replay_of_the_log_writes_none_of_them_back(run, kafka):
    """metric_rollup over the whole log again (a new deployment, a recovery): the register in
    the warehouse (deleted_ids) keeps every row of theirs out."""
    cfg, _ = run
    run_jobs(cfg, kafka, "metric_rollup")
    assert not any(rows_naming(cfg, (ANN_IDS - {"ann"}) | {"cy"}).values())
    assert rows_naming(cfg, {"bob"})["events"] >= 3  # the replay did write (the rest collapses by key)
