"""metric_rollup's writer turning one bundle of every input's records into rows per table
(jobs/metric_rollup.py WarehouseWriter._rows; no Flink runs, no warehouse is opened)."""
from __future__ import annotations

import json
from types import SimpleNamespace

from jobs.metric_rollup import WarehouseWriter
from tests.conftest import BEGINNING
from tests.test_rollup import event

TOPICS = {"events": "t.events", "derived": "t.derived", "identities": "t.identities", "profiles": "t.profiles",
          "segments": "t.segments", "dead_letter": "t.deadletter"}


def rows_of(records):
    """(tables, deleted, dead letters) of a bundle of (role, text) records."""
    bundle = SimpleNamespace(values=[text for _, text in records], stamps=[BEGINNING] * len(records),
                             roles=[role for role, _ in records])
    return WarehouseWriter(clickhouse=None, topics=TOPICS)._rows(bundle)


def test_one_bundle_gives_one_row_list_per_table_whatever_input_the_rows_came_from():
    tables, _, dead = rows_of([("events", event("ann", BEGINNING)),
                               ("derived", event("ann", BEGINNING + 1, kind="derived", name="Cart abandoned")),
                               ("events", event("bob", BEGINNING + 2))])
    assert not dead
    assert [row[1] for row in tables["events"]] == [f"ann-{BEGINNING}", f"ann-{BEGINNING + 1}", f"bob-{BEGINNING + 2}"]


def test_each_bad_record_is_a_dead_letter_naming_the_topic_it_came_from():
    _, _, dead = rows_of([("events", event("ann", BEGINNING)), ("profiles", "not json"), ("derived", "[1]"),
                          ("segments", "{}")])
    assert dead.topics == ["t.deadletter"] * 3
    assert [json.loads(v)["topic"] for v in dead.values] == ["t.profiles", "t.derived", "t.segments"]


def test_a_deletion_in_the_bundle_drops_that_persons_rows_from_every_input():
    notice = event("ann", BEGINNING + 10, kind="delete", name="$delete", data={"person_id": "ann", "ids": ["ann"]})
    identity = json.dumps({"app": "shop", "distinct_id": "ann", "person_id": "ann", "version": 1, "ts": BEGINNING,
                           "event_id": "i-1"})
    tables, deleted, _ = rows_of([("identities", identity), ("derived", event("ann", BEGINNING, kind="derived")),
                                  ("events", notice), ("events", event("bob", BEGINNING))])
    assert deleted == {"shop": {"ann"}}
    assert "identities" not in tables and [row[1] for row in tables["events"]] == [f"bob-{BEGINNING}"]
