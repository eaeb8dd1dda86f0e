"""metric_rollup's decisions without Flink (udfs/rollup.py): tombstones, and the register of
deleted ids that keeps a replay or a late record from writing a deleted person back."""
from __future__ import annotations

import json

from tests.conftest import BEGINNING
from udfs.rollup import Deletions, to_rows


def event(person, t, distinct_id=None, kind="track", name="purchase", data=None):
    return json.dumps({"event_id": f"{person}-{t}", "app": "shop", "kind": kind, "event": name,
                       "distinct_id": distinct_id or person, "person_id": person, "ts": t, "received_at": t,
                       "data": data or {}})


def test_a_tombstone_gives_no_rows_and_is_no_dead_letter():
    assert to_rows("identities", None) == [] and to_rows("profiles", None) == []


def test_the_register_drops_what_came_before_the_deletion_and_keeps_what_came_after():
    deleted_at = BEGINNING + 100
    notice = event("ann", deleted_at, kind="delete", name="$delete", data={"person_id": "ann", "ids": ["ann", "a-1"]})
    register = Deletions()
    for table, row in to_rows("events", notice):
        assert table == "deleted_ids"
        register.add(row)
    assert len(register.known) == 2  # both ids, hashed
    for person, distinct_id, t, kept in (("ann", "ann", deleted_at - 50, False),  # a replayed or late row of ann's
                                         ("ann", "a-1", deleted_at, False),       # (the deletion's own instant too)
                                         ("ann", "ann", deleted_at + 1, True),    # the id taken up again: someone new
                                         ("bob", "bob", deleted_at - 50, True)):  # another person
        (table, row), = to_rows("events", event(person, t, distinct_id))
        assert register.keeps(table, row, t) is kept, (person, distinct_id, t)
    other_app = json.loads(event("ann", deleted_at - 50))
    other_app["app"] = "video"
    (table, row), = to_rows("events", json.dumps(other_app))
    assert register.keeps(table, row, deleted_at - 50)  # the same id in another app is not deleted
