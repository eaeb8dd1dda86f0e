"""metric_rollup's decisions without Flink (udfs/rollup.py): tombstones, the register of
deleted ids that keeps a replay or a late record from writing a deleted person back, and the
per-record fast path."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.conftest import BEGINNING
from udfs.envelope import BadRecord
from udfs.rollup import JSON_COLUMNS, MAX_TS_MS, NUMBER_COLUMNS, ROLE_TABLE, TABLES, Deletions, _need, json_text, to_rows


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


# Values a record's field may hold, good and bad for any column: _row's fast path must take
# exactly what _need accepts, and build the same row.
ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2, max_value=2 ** 64),
                      st.sampled_from([MAX_TS_MS, MAX_TS_MS + 1, 2 ** 63, 2 ** 63 + 1, 1.0]),
                      st.text(max_size=3), st.dictionaries(st.text(max_size=2), st.integers(-2 ** 63, 2 ** 63 - 1), max_size=2),
                      st.lists(st.integers(), max_size=2))


@pytest.mark.parametrize("role", ["events", "identities", "profiles", "segments"])
@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.too_slow])  # its timing fails on a machine busy with the suite's jobs
def test_the_fast_path_takes_what_the_checks_accept_and_builds_the_same_row(role, data):
    table = ROLE_TABLE[role]
    columns = TABLES[table]
    good = {str: "x", int: MAX_TS_MS, dict: {"b": 1, "a": [2]}}
    rec = {c: good[int if c in NUMBER_COLUMNS else dict if c in JSON_COLUMNS else str] for c in columns}
    for c in data.draw(st.lists(st.sampled_from(columns), max_size=2, unique=True), label="changed"):  # the rest stays good
        if data.draw(st.booleans(), label=f"drop {c}"):
            del rec[c]
        else:
            rec[c] = data.draw(ANY_VALUE, label=c)
    if "kind" in rec and rec["kind"] in ("set", "merge", "delete"):
        rec["kind"] = "track"  # those are other paths, not this one
    if table == "events" and not rec.get("data"):
        rec["data"] = {}  # what to_rows makes of an absent or empty `data` before the checks
    try:
        _need(rec, columns)
    except BadRecord:
        with pytest.raises(BadRecord):
            to_rows(role, json.dumps(rec))
        return
    expected = [json_text(rec[c]) if c in JSON_COLUMNS else rec.get(c) for c in columns]
    assert to_rows(role, json.dumps(rec)) == [(table, expected)]
