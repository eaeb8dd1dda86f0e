"""segment_eval's decisions (udfs/segments.py, udfs/segment_rules.py) on a simulated clock:
the seed's segments, entries and exits with their causes, windows that expire on their own,
definitions changed while running, merges, state that shrinks; and a property test against
a reference that recomputes membership from the whole history."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from tests.conftest import BEGINNING, ONE_DAY, ONE_MINUTE
from tests.persons_sim import Sim
from udfs.segment_rules import compare, parse_segment
from udfs.segments import SegmentLogic

APP = "video"
SEED_SEGMENTS = {
    "item1": {"where": {"event": "Item1"}},
    "adults": {"where": {"property": "age", "op": "gte", "value": 25}},
    "big_cities": {"where": {"any": [{"property": "city", "op": "eq", "value": "New York"},
                                     {"property": "city", "op": "eq", "value": "London"}]}},
    "basic": {"where": {"property": "plan", "op": "eq", "value": "Basic"}},
    "tire_buyers": {"where": {"event": "purchase", "where": [{"property": "category", "op": "eq", "value": "tires"}],
                              "within": "60d"}},
    "regulars": {"where": {"event": "purchase", "at_least": 5}},
    "acme": {"where": {"company": "Acme Inc"}},
    "globex": {"where": {"company": {"id": "c-42"}}},
}


def logic(defs=None) -> SegmentLogic:
    return SegmentLogic({APP: {n: parse_segment(n, d) for n, d in (defs or SEED_SEGMENTS).items()}})


def ev(person, name, t, data=None, kind="track", eid=None):
    return {"event_id": eid or f"{person}-{name}-{t}", "app": APP, "kind": kind, "event": name, "distinct_id": person,
            "person_id": person, "ts": t, "received_at": t, "data": data or {}}


def props(person, t, **values):
    return ev(person, "$set", t, values, kind="set")


def feed(s: Sim, *records, clock=None):
    for r in records:
        s.record(f"{APP}:{r['person_id']}", r, r["received_at"])
    if clock is not None:
        s.clock(clock)


def merge_notices(merged_away: str, survivor: str, t: int) -> list[dict]:
    """identity_merge's two $merge notices of one merge, as tracktor.events carries them."""
    return [ev(merged_away, "$merge", t, {"merged_into": survivor}, kind="merge"),
            ev(survivor, "$merge", t, {"merged": [merged_away]}, kind="merge")]


def redefine(s: Sim, lg: SegmentLogic, name: str, definition, t: int) -> None:
    """A definition changed while running: taken in, then every known person revisited."""
    lg.adopt(f"{APP}:{name}", definition)
    for key in list(s.entries):
        s._store(key, s.router.revisit(key, s.entries[key], t, {"reason": "definition", "segment": name}, s.out))


def changes(s: Sim, person=None):
    return [(r["segment"], r["change"]) for role, _, r, _ in s.outputs
            if role == "segments" and (person is None or r["person_id"] == person)]


def members(s: Sim, segment: str) -> set[str]:
    now = {}
    for role, _, r, _ in s.outputs:
        if role == "segments" and r["segment"] == segment:
            now[r["person_id"]] = r["change"] == "entered"
    return {p for p, inside in now.items() if inside}


def test_the_seeds_segments():
    s = Sim(logic(), "segment_eval")
    t = BEGINNING
    feed(s, ev("ann", "Item1", t), props("ann", t, age=25, city="London", plan="Basic", company="Acme Inc"),
         props("bob", t, age=24.9, city="Paris", plan="basic", company={"id": "c-42", "name": "Globex"}),
         ev("bob", "purchase", t, {"category": "tires"}))
    assert sorted(changes(s, "ann")) == sorted([("item1", "entered"), ("adults", "entered"), ("big_cities", "entered"),
                                                ("basic", "entered"), ("acme", "entered")])
    assert sorted(changes(s, "bob")) == [("globex", "entered"), ("tire_buyers", "entered")]
    cause = [r["cause"] for role, _, r, _ in s.outputs if role == "segments" and r["segment"] == "item1"][0]
    assert cause == {"event_id": f"ann-Item1-{t}", "event": "Item1"}


def test_a_property_change_moves_a_person_in_and_out():
    s = Sim(logic(), "segment_eval")
    feed(s, props("u", BEGINNING, plan="Basic"), props("u", BEGINNING + 1, plan="Gold"),
         props("u", BEGINNING + 2, plan="Basic"), props("u", BEGINNING + 3, plan=None))
    assert changes(s, "u") == [("basic", "entered"), ("basic", "exited"), ("basic", "entered"), ("basic", "exited")]
    versions = [r["version"] for role, _, r, _ in s.outputs if role == "segments"]
    assert versions == [1, 2, 3, 4]


def test_a_window_expires_with_no_further_event():
    s = Sim(logic(), "segment_eval")
    feed(s, ev("u", "purchase", BEGINNING, {"category": "tires"}))
    s.clock(BEGINNING + 59 * ONE_DAY)
    assert members(s, "tire_buyers") == {"u"}
    s.clock(BEGINNING + 61 * ONE_DAY)  # 60 days later the purchase has left the window
    assert members(s, "tire_buyers") == set()
    exit_record = [r for role, _, r, _ in s.outputs if role == "segments" and r["change"] == "exited"][0]
    assert exit_record["ts"] == BEGINNING + 60 * ONE_DAY and exit_record["cause"] == {"reason": "time"}
    assert s.router.wake(s.entries[f"{APP}:u"]) is None  # nothing left to wake for


def test_more_purchases_keep_the_window_open_and_at_least_counts_every_one():
    s = Sim(logic(), "segment_eval")
    feed(s, *(ev("u", "purchase", BEGINNING + i * 20 * ONE_DAY, {"category": "tires"}) for i in range(5)))
    s.clock(BEGINNING + 100 * ONE_DAY)
    assert changes(s, "u") == [("tire_buyers", "entered"), ("regulars", "entered")]


def test_definitions_added_edited_and_deleted_while_running():
    lg = logic({"item1": {"where": {"event": "Item1"}}})
    s = Sim(lg, "segment_eval")
    feed(s, ev("u", "Item1", BEGINNING), ev("u", "Item2", BEGINNING + 1), ev("v", "Item2", BEGINNING + 2))

    redefine(s, lg, "item2", {"where": {"event": "Item2"}}, BEGINNING + 10)  # new: applies to the history kept
    assert members(s, "item2") == {"u", "v"}
    redefine(s, lg, "item1", {"where": {"event": "Item1", "at_least": 2}}, BEGINNING + 20)  # edited
    assert members(s, "item1") == set()
    redefine(s, lg, "item2", None, BEGINNING + 30)  # deleted: its members exit
    assert members(s, "item2") == set()
    with pytest.raises(ValueError, match=r"segment 'item2': where.within: expected a number of days"):
        lg.adopt(f"{APP}:item2", {"where": {"event": "Item2", "within": "soon"}})
    assert set(lg.definitions(APP).segments) == {"item1"}  # the last good ones stay


def test_a_merge_joins_counts_and_properties_and_the_merged_away_person_leaves():
    s = Sim(logic(), "segment_eval")
    anon, user, t = "a-3bxuAxl18r02UsdTUdk1Ri9", "unicorn", BEGINNING
    feed(s, *(ev(anon, "purchase", t + i) for i in range(3)), props(anon, t, age=30))
    feed(s, *merge_notices(anon, user, t + 10),
         *(ev(user, "purchase", t + 20 + i) for i in range(2)), clock=t + ONE_MINUTE)
    s.deliver()
    assert ("regulars", "entered") in changes(s, user) and ("adults", "entered") in changes(s, user)
    assert changes(s, anon) == [("adults", "entered"), ("adults", "exited")]
    assert s.entries[f"{APP}:{anon}"] == {"to": user}


def test_state_shrinks_when_a_filtered_segment_goes_and_when_days_age_out():
    lg = logic()
    s = Sim(lg, "segment_eval")
    feed(s, ev("u", "purchase", BEGINNING, {"category": "tires"}))
    state = s.entries[f"{APP}:u"]["s"]
    assert len(state["counts"]) == 2  # purchase, and purchase with the tires filter
    lg.adopt(f"{APP}:tire_buyers", None)
    s._store(f"{APP}:u", s.router.revisit(f"{APP}:u", s.entries[f"{APP}:u"], BEGINNING + 1,
                                            {"reason": "definition", "segment": "tire_buyers"}, s.out))
    assert list(s.entries[f"{APP}:u"]["s"]["counts"]) == ["purchase"]
    feed(s, ev("u", "Other", BEGINNING + 401 * ONE_DAY))  # the purchase is past the 400 days kept
    assert list(s.entries[f"{APP}:u"]["s"]["counts"]) == ["Other"]


def _nested(levels: int) -> dict:
    node = {"event": "x"}
    for _ in range(levels):
        node = {"all": [node]}
    return node


def test_invalid_definitions_name_the_segment_and_the_condition():
    for definition, words in [({"where": {"event": "x", "at_least": 0}}, "where.at_least"),
                              ({"where": {"all": [{"property": "age", "op": "gt", "value": "old"}]}},
                               "where.all[0].property: 'gt' compares numbers"),
                              ({"where": {"colour": "red"}}, "a condition needs one of"),
                              ({"where": {"event": "x", "within": "30d", "between": ["2026-01-01", "2026-02-01"]}},
                               "within or between"),
                              ({"where": {"property": "age", "op": "gt", "value": float("nan")}}, "holds nan"),
                              ({"where": {"property": "n", "op": "eq", "value": 2 ** 64}}, "64-bit"),
                              ({"where": _nested(40)}, "nests deeper than 32 levels"),
                              ({"where": {"company": {}}}, "an object needs an id or a name")]:
        with pytest.raises(ValueError) as err:
            parse_segment("bad", definition)
        assert "segment 'bad'" in str(err.value) and words in str(err.value)


@pytest.mark.parametrize("have, op, want, expected", [
    (5, "gt", 4.5, True), ("5", "gt", 4, False), (3, "eq", 3.0, True), (None, "ne", 1, True),
    ("New York City", "contains", "York", True), (["a", "b"], "contains", "b", True), (2, "in", [1, 2.0], True),
    (True, "eq", 1, False), (1, "in", [True], False), (True, "eq", True, True), (False, "ne", 0, True),
])
def test_comparisons_compare_numbers_as_numbers(have, op, want, expected):
    assert compare(have, op, want, True) is expected


# -- property: the evaluator against membership recomputed from the whole history ----------
RANDOM_DEFS = {
    "e1": {"where": {"event": "E1"}},
    "e2_twice_30d": {"where": {"event": "E2", "at_least": 2, "within": "30d"}},
    "no_e1_10d": {"where": {"all": [{"event": "E2"}, {"event": "E1", "within": "10d", "performed": False}]}},
    "red_e3": {"where": {"event": "E3", "where": [{"property": "colour", "op": "eq", "value": "red"}], "at_most": 2}},
    "gold_or_old": {"where": {"any": [{"property": "plan", "op": "eq", "value": "gold"},
                                      {"property": "age", "op": "gte", "value": 40}]}},
    "january": {"where": {"event": "E1", "between": ["2026-01-01", "2026-01-31"]}},
}


def reference(history, now):
    """Membership at `now` from the whole history, by the definitions' plain meaning."""
    defs = {n: parse_segment(n, d) for n, d in RANDOM_DEFS.items()}
    today = now // ONE_DAY
    props = {}
    for r in sorted((r for r in history if r["kind"] == "set"), key=lambda r: (r["ts"], r["event_id"])):
        props.update(r["data"])
    props = {k: v for k, v in props.items() if v is not None}

    def holds(cond):
        if hasattr(cond, "all"):
            return all(holds(c) for c in cond.all)
        if hasattr(cond, "any"):
            return any(holds(c) for c in cond.any)
        if hasattr(cond, "event"):
            days = cond.days(today)
            n = sum(1 for r in history if r["kind"] == "track" and r["event"] == cond.event and cond.matches(r["data"])
                    and (days is None or days[0] <= r["ts"] // ONE_DAY <= days[1]))
            return cond.holds(n)
        return cond.holds(props)
    return {n for n, seg in defs.items() if holds(seg.where)}


history_item = st.one_of(
    st.tuples(st.just("track"), st.sampled_from(["E1", "E2", "E3"]), st.sampled_from([{}, {"colour": "red"}, {"colour": "blue"}])),
    st.tuples(st.just("set"), st.just("$set"), st.dictionaries(st.sampled_from(["plan", "age"]),
                                                               st.sampled_from(["gold", "free", 20, 45, None]), min_size=1)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60 * 24), history_item), max_size=25), st.integers(0, 90), st.randoms())
def test_membership_matches_the_reference_for_any_history_and_clock(items, extra_days, rnd):
    s = Sim(logic(RANDOM_DEFS), "segment_eval")
    history = []
    for i, (minutes, (kind, name, data)) in enumerate(sorted(items, key=lambda x: x[0])):
        t = BEGINNING + minutes * 45 * ONE_MINUTE  # about 45 days of history
        history.append(ev("u", name, t, data, kind=kind, eid=f"e{i:03d}"))
    for r in history:
        feed(s, r, clock=r["ts"] - 1)
    end = (history[-1]["ts"] if history else BEGINNING) + extra_days * ONE_DAY
    s.clock(end)
    now = max(end // 1000 * 1000, history[-1]["ts"] if history else 0)
    assert members_of(s) == reference(history, now if history else BEGINNING)


def members_of(s: Sim) -> set[str]:
    state = s.entries.get(f"{APP}:u")
    return set(state["s"]["in"]) if state else set()


def test_a_deleted_person_leaves_every_segment_and_their_state_goes_with_a_merge_in_between():
    s = Sim(logic(), "segment_eval")
    anon, user, t = "a-3bxuAxl18r02UsdTUdk1Ri9", "unicorn", BEGINNING
    feed(s, props(anon, t, age=30), ev(anon, "Item1", t + 1))
    # the merge and, before its hand-over is in, the deletion: the survivor holds it
    delete = {"person_id": user, "ids": [anon, user]}
    feed(s, *merge_notices(anon, user, t + 10),
         ev(user, "$delete", t + 20, delete, kind="delete"), clock=t + ONE_MINUTE)
    s.deliver()
    feed(s, ev(anon, "$delete", t + 20, delete, kind="delete"), clock=t + 2 * ONE_MINUTE)
    s.deliver()
    assert changes(s, user) == [("adults", "entered"), ("item1", "entered"), ("adults", "exited"), ("item1", "exited")]
    deleted = [r for role, _, r, _ in s.outputs if role == "segments" and r["person_id"] == user and r["change"] == "exited"]
    assert all(r["cause"] == {"reason": "deleted"} for r in deleted)
    assert s.entries == {}  # neither the person nor the redirect of the merged-away id is left


def test_a_deletion_held_by_the_merged_away_id_stays_out_of_the_survivor_and_leaves_no_redirect():
    """identity_merge sends the merged-away id its $delete right after its $merge: it must not
    travel on to the survivor (where it would land after the survivor's newer records) nor
    leave a redirect behind (the id may come back as someone new)."""
    s = Sim(logic(), "segment_eval")
    anon, user, t = "a-3bxuAxl18r02UsdTUdk1Ri9", "unicorn", BEGINNING
    feed(s, props(anon, t, age=30), ev(anon, "Item1", t + 1))
    delete = {"person_id": user, "ids": [anon, user]}
    feed(s, *merge_notices(anon, user, t + 10),
         ev(anon, "$delete", t + 20, delete, kind="delete"), ev(user, "$delete", t + 20, delete, kind="delete"),
         ev(user, "Item1", t + 30))  # the id unicorn taken up again after the deletion
    s.clock(t + ONE_MINUTE)
    s.deliver()
    s.clock(t + 2 * ONE_MINUTE)
    assert changes(s, user) == [("adults", "entered"), ("item1", "entered"),  # the merge, then the deletion
                                ("adults", "exited"), ("item1", "exited"), ("item1", "entered")]  # the new unicorn
    assert changes(s, anon) == [("adults", "entered"), ("item1", "entered"), ("adults", "exited"), ("item1", "exited")]
    feed(s, props(anon, t + 40, age=40), clock=t + 3 * ONE_MINUTE)  # the id anon back: its own person
    assert members(s, "adults") == {anon} and members(s, "item1") == {user}


def test_a_segment_deleted_while_its_member_awaits_a_merge_lets_them_out_after_it():
    lg = logic({"item2": {"where": {"event": "Item2"}}, "item1": {"where": {"event": "Item1"}}})
    s = Sim(lg, "segment_eval")
    anon, user, t = "a-3bxuAxl18r02UsdTUdk1Ri9", "unicorn", BEGINNING
    feed(s, ev(user, "Item2", t), ev(anon, "Item1", t + 1))
    feed(s, *merge_notices(anon, user, t + 10))
    redefine(s, lg, "item2", None, t + 11)  # the survivor is merging: not revisited now
    s.clock(t + ONE_MINUTE)
    s.deliver()
    assert members(s, "item2") == set() and members(s, "item1") == {user}


def test_past_the_counter_cap_the_counters_segments_read_stay():
    from udfs.segments import MAX_COUNTERS
    s = Sim(logic({"buyer": {"where": {"event": "purchase"}}}), "segment_eval")
    t = BEGINNING
    feed(s, *[ev("u", f"noise-{i}", t + i) for i in range(MAX_COUNTERS + 5)], ev("u", "purchase", t + MAX_COUNTERS + 10))
    counts = s.entries[f"{APP}:u"]["s"]["counts"]
    assert len(counts) == MAX_COUNTERS and "purchase" in counts
    assert members(s, "buyer") == {"u"}
