"""workflow_runner's decisions (udfs/workflows.py) on a simulated clock, without Flink:
triggers, filters, delays, actions, merges, definition changes, and that replays and
restarts give every action exactly once."""
from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.persons_sim import Sim
from udfs.campaigns import parse_campaign
from udfs.letters import render, sign, token_app, tracked, verify
from udfs.persons import segment_change
from udfs.workflows import WorkflowLogic

APP = "demo-video"
T0 = 1_767_225_600_000  # 2026-01-01
MIN = 60_000

SEED = {  # the seed's "Creating your first Workflow Campaign"
    "trigger": {"event": "Movie watch"}, "start": "limit",
    "blocks": {"limit": {"entry_limit": 20, "no": "plan"},
               "plan": {"where": {"property": "plan", "op": "eq", "value": "free"}, "yes": "offer"},
               "offer": {"letter": {"subject": "A present for you, {{name}}", "body":
                                    '<p>Hi {{name}}, <a href="https://video.example/upgrade">upgrade</a></p>'}}}}
REMINDER = {  # an abandoned cart: a letter, then a second one a day later unless they bought
    "trigger": {"event": "Cart abandoned"}, "start": "first",
    "blocks": {"first": {"letter": {"subject": "Your cart", "body": "<p>{{name|Hello}}</p>"}, "next": "wait"},
               "wait": {"wait_until": {"event": "Cart purchased", "at_most": "1d"}, "no": "second"},
               "second": {"webhook": {"url": "http://127.0.0.1:9/hook", "payload": {"who": "{{email}}"}}}}}


def logic(**campaigns) -> WorkflowLogic:
    return WorkflowLogic({APP: {name: parse_campaign(name, c) for name, c in campaigns.items()}})


_ids = iter(range(10 ** 9))


def event(person: str, name: str, t: int, kind: str = "track", data: dict | None = None) -> dict:
    return {"event_id": f"e{next(_ids)}", "app": APP, "kind": kind, "event": name, "distinct_id": person,
            "person_id": person, "ts": t, "received_at": t, "data": data or {}}


def props(person: str, t: int, **values) -> dict:
    return event(person, "$set", t, "set", values)


def actions(sim: Sim) -> list[dict]:
    return [r for role, _, r, _ in sim.outputs if role == "actions"]


def steps(sim: Sim) -> list[tuple[str, str]]:
    return [(r["data"]["campaign"], r["data"]["block"]) for role, _, r, _ in sim.outputs
            if role == "derived" and r["event"] == "Campaign step"]


def feed(sim: Sim, records) -> None:
    for r in records:
        sim.record(f"{APP}:{r['person_id']}", r, r["ts"])
        sim.clock(r["ts"])


def test_the_seeds_campaign_sends_one_letter_on_the_20th_movie_to_a_free_person():
    sim = Sim(logic(free_movie_fans=SEED), "workflow_runner")
    feed(sim, [props("u1", T0, plan="free", name="Ann <b>", email="ann@example.com"),
               props("u2", T0, plan="premium", name="Bob", email="bob@example.com")])
    feed(sim, [event(p, "Movie watch", T0 + i * MIN) for i in range(1, 26) for p in ("u1", "u2")])
    sent = actions(sim)
    assert [(a["person_id"], a["kind"], a["entry"]) for a in sent] == [("u1", "letter", 20)]
    letter = sent[0]["letter"]
    assert letter["to"] == "ann@example.com" and letter["subject"] == "A present for you, Ann <b>"
    assert "Hi Ann &lt;b&gt;" in letter["html"]  # a property never adds markup
    assert steps(sim).count(("free_movie_fans", "limit")) == 50  # every entry reaches the limit block...
    assert steps(sim).count(("free_movie_fans", "plan")) == 2       # ...and goes on from it once, at the 20th
    assert steps(sim).count(("free_movie_fans", "offer")) == 1


def test_a_merge_that_jumps_past_the_entry_limit_still_takes_no_once():
    sim = Sim(logic(free_movie_fans=SEED), "workflow_runner")
    feed(sim, [props("anon", T0, plan="free", email="a@x"), props("user", T0, plan="free")])
    feed(sim, [event("anon", "Movie watch", T0 + i * MIN) for i in range(1, 15)])
    feed(sim, [event("user", "Movie watch", T0 + i * MIN) for i in range(15, 25)])  # 14 + 10: never the 20th alone
    feed(sim, [event("user", "$merge", T0 + 30 * MIN, "merge", {"merged": ["anon"]}),
               event("anon", "$merge", T0 + 30 * MIN, "merge", {"merged_into": "user"})])
    sim.clock(T0 + 31 * MIN)
    sim.deliver()
    sim.clock(T0 + 31 * MIN)
    assert sim.entries[f"{APP}:user"]["s"]["entries"] == {"free_movie_fans": 24} and not actions(sim)
    feed(sim, [event("user", "Movie watch", T0 + i * MIN) for i in range(40, 45)])  # the 25th .. 29th
    assert [(a["person_id"], a["entry"]) for a in actions(sim)] == [("user", 25)]


def test_a_wait_until_goes_on_by_yes_when_the_event_comes_and_by_no_when_the_time_is_up():
    sim = Sim(logic(reminder=REMINDER), "workflow_runner")
    feed(sim, [props("u1", T0, email="a@x"), props("u2", T0, email="b@x"),
               event("u1", "Cart abandoned", T0 + MIN, "derived"), event("u2", "Cart abandoned", T0 + MIN, "derived"),
               event("u1", "Cart purchased", T0 + 60 * MIN, "derived")])
    assert [a["kind"] for a in actions(sim)] == ["letter", "letter"]
    sim.clock(T0 + MIN + 86_400_000 - 1)
    assert len(actions(sim)) == 2  # not a moment early
    sim.clock(T0 + MIN + 86_400_000)
    hook = actions(sim)[-1]
    assert hook["person_id"] == "u2" and hook["webhook"] == {"url": "http://127.0.0.1:9/hook", "payload": {"who": "b@x"}}
    assert hook["ts"] == T0 + MIN + 86_400_000  # at the delay's end, on the log's clock
    assert not sim.entries[f"{APP}:u1"]["s"]["runs"] and not sim.entries[f"{APP}:u2"]["s"]["runs"]


def test_events_are_taken_in_time_order_whatever_order_the_topics_deliver_them_in():
    sim = Sim(logic(reminder=REMINDER), "workflow_runner")
    for r in [event("u1", "Cart abandoned", T0 + 2 * MIN, "derived"),  # tracktor.derived delivered first
              props("u1", T0, email="a@x", name="Ann")]:                   # tracktor.events later
        sim.record(f"{APP}:u1", r, r["ts"])
    assert not actions(sim)  # nothing before the clock passes them
    sim.clock(T0 + 2 * MIN)
    (letter,) = actions(sim)
    assert letter["letter"]["to"] == "a@x" and letter["letter"]["html"] == "<p>Ann</p>"


def test_a_trigger_while_a_run_waits_is_not_a_second_entry():
    sim = Sim(logic(reminder=REMINDER), "workflow_runner")
    feed(sim, [event("u1", "Cart abandoned", T0 + i * MIN, "derived") for i in range(3)])
    assert len(actions(sim)) == 1 and sim.entries[f"{APP}:u1"]["s"]["entries"] == {"reminder": 1}


def test_segment_and_property_triggers_and_the_segment_filter():
    sim = Sim(logic(
        welcome={"trigger": {"segment": "regulars"}, "start": "hi", "blocks": {"hi": {"in_app": {"body": "Hi {{name}}"}}}},
        bye={"trigger": {"segment": "regulars", "change": "exited"}, "start": "s",
             "blocks": {"s": {"set": {"churned": "yes"}}}},
        upgraded={"trigger": {"property": "plan"}, "start": "vip",
                  "blocks": {"vip": {"in_segment": "regulars", "yes": "e"}, "e": {"emit": {"event": "VIP upgrade",
                                                                                           "data": {"plan": "{{plan}}"}}}}}),
        "workflow_runner")

    def seg(change, t, version):
        return segment_change({"app": APP, "segment": "regulars", "person_id": "u1", "change": change, "ts": t,
                               "version": version})
    feed(sim, [props("u1", T0, name="Ann", plan="free"), seg("entered", T0 + MIN, 1),
               props("u1", T0 + 2 * MIN, plan="free"),   # no change: no trigger
               props("u1", T0 + 3 * MIN, plan="gold"), seg("exited", T0 + 4 * MIN, 2),
               props("u1", T0 + 5 * MIN, plan="platinum")])  # out of the segment now: the filter says no
    got = [(a["campaign"], a.get("in_app") or a.get("set") or a.get("emit")) for a in actions(sim)]
    assert got == [("welcome", {"title": "", "body": "Hi Ann"}), ("upgraded", {"event": "VIP upgrade", "data": {"plan": "gold"}}),
                   ("bye", {"churned": "yes"})]


def test_an_event_criteria_filter_counts_within_its_period():
    sim = Sim(logic(loyal={"trigger": {"event": "Purchase"}, "start": "often", "blocks": {
        "often": {"where": {"event": "Purchase", "at_least": 3, "within": "7d"}, "yes": "thanks"},
        "thanks": {"in_app": {"body": "thanks"}}}}), "workflow_runner")
    day = 86_400_000
    feed(sim, [event("u1", "Purchase", T0 + d * day) for d in (0, 10, 11, 12)])
    assert [a["ts"] for a in actions(sim)] == [T0 + 12 * day]  # three within the last 7 days only then


def test_a_merge_hands_runs_and_entries_over_and_action_ids_stay_the_runs_own():
    sim = Sim(logic(reminder=REMINDER), "workflow_runner")
    feed(sim, [props("anon", T0, email="a@x"), event("anon", "Cart abandoned", T0 + MIN, "derived")])
    first = actions(sim)[0]
    merge_b = {**event("user", "$merge", T0 + 2 * MIN, "merge", {"merged": ["anon"]})}
    merge_a = {**event("anon", "$merge", T0 + 2 * MIN, "merge", {"merged_into": "user"})}
    feed(sim, [merge_b, merge_a])
    sim.clock(T0 + 3 * MIN)
    sim.deliver()
    sim.clock(T0 + 3 * MIN)
    survivor = sim.entries[f"{APP}:user"]["s"]
    assert survivor["entries"] == {"reminder": 1} and "reminder" in survivor["runs"]
    sim.clock(T0 + MIN + 86_400_000)
    hook = actions(sim)[-1]
    assert hook["person_id"] == "user" and hook["block"] == "second" and hook["action_id"] != first["action_id"]
    assert hook["webhook"]["payload"] == {"who": "a@x"}  # the properties came along


def test_a_deleted_person_gets_nothing_more_and_an_id_that_comes_back_is_someone_new():
    sim = Sim(logic(reminder=REMINDER), "workflow_runner")
    feed(sim, [event("u1", "Cart abandoned", T0, "derived"), event("u1", "$delete", T0 + MIN, "delete")])
    sim.clock(T0 + 2 * 86_400_000)
    assert [a["block"] for a in actions(sim)] == ["first"]
    feed(sim, [event("u1", "Cart abandoned", T0 + 3 * 86_400_000, "derived")])
    first, again = actions(sim)[0], actions(sim)[-1]
    assert again["block"] == "first" and again["entry"] == 1 and again["action_id"] != first["action_id"]


def test_a_changed_campaign_ends_runs_waiting_in_a_block_that_is_gone():
    lg = logic(reminder=REMINDER)
    sim = Sim(lg, "workflow_runner")
    feed(sim, [event("u1", "Cart abandoned", T0, "derived")])
    changed = copy.deepcopy(REMINDER)
    changed["blocks"]["first"].pop("next")
    del changed["blocks"]["wait"], changed["blocks"]["second"]
    assert lg.change_of({"kind": "campaign", "app": APP, "name": "reminder", "definition": changed}) == \
        (f"{APP}:reminder", APP)
    lg.adopt(f"{APP}:reminder", changed)
    key = f"{APP}:u1"
    sim.entries[key] = sim.router.revisit(key, sim.entries[key], T0 + MIN, {"reason": "definition", "segment": "reminder"},
                                          sim.out)
    assert key not in sim.entries or not sim.entries[key]["s"]["runs"]
    assert lg.change_of({"kind": "segment", "app": APP, "name": "x", "definition": None}) is None  # segment_eval's


@pytest.mark.parametrize("bad, says", [
    ({"trigger": {"event": "x"}, "start": "a", "blocks": {"a": {"wait": "1h", "next": "b"}, "b": {"wait": "1h", "next": "a"}}},
     "a cycle a -> b -> a"),
    ({"trigger": {"event": "x"}, "start": "a", "blocks": {"a": {"wait": "1h", "yes": "a"}}}, "by next, not yes"),
    ({"trigger": {"event": "x"}, "start": "nope", "blocks": {"a": {"wait": "1h"}}}, "start: no block 'nope'"),
    ({"trigger": {"event": "x"}, "start": "a", "blocks": {"a": {"wait": "soon"}}}, "a duration like 30m"),
    ({"trigger": {"event": "x"}, "start": "a", "blocks": {"a": {"webhook": {"url": "http://h", "payload": {"a": {1: 2}}}}}},
     "a key that is not a string"),
    ({"trigger": {"event": "Campaign step"}, "start": "a", "blocks": {"a": {"wait": "1h"}}}, "the runner's own event"),
    ({"trigger": {"event": "x"}, "start": "a", "blocks": {"a": {"webhook": {"url": "file:///etc/passwd"}}}},
     "must start with http"),
    ({"trigger": {"event": "x"}, "start": "a", "blocks": {"a": {"where": {"property": "p", "op": "gt", "value": "x"}}}},
     "compares numbers"),
    ({"trigger": {"event": "x"}, "start": "a", "blocks": {"a": {"wait": "1h", "letter": {"subject": "s", "body": "b"}}}},
     "exactly one of"),
])
def test_invalid_campaigns_are_refused_naming_the_fault(bad, says):
    with pytest.raises(ValueError, match="campaign 'c'") as e:
        parse_campaign("c", bad)
    assert says in str(e.value)


def test_campaigns_whose_actions_trigger_each_other_are_refused():
    from udfs.campaigns import check_no_loops

    def c(name, trigger, block):
        return parse_campaign(name, {"trigger": trigger, "start": "a", "blocks": {"a": block}})
    letter = {"letter": {"subject": "s", "body": "b"}}
    for loop, says in [
        ({"a": c("a", {"event": "x"}, {"emit": {"event": "x"}})}, "a -> a"),
        ({"a": c("a", {"event": "y"}, {"emit": {"event": "x"}}), "b": c("b", {"event": "x"}, {"emit": {"event": "y"}})},
         "a -> b -> a"),
        ({"a": c("a", {"event": "Letter sent"}, letter)}, "a -> a"),
        ({"a": c("a", {"event": "Letter clicked"}, letter)}, "a -> a"),
        ({"a": c("a", {"property": "p"}, {"set": {"p": 1}})}, "a -> a"),
    ]:
        with pytest.raises(ValueError, match=says):
            check_no_loops(loop)
    check_no_loops({"a": c("a", {"event": "x"}, letter), "b": c("b", {"event": "Letter opened"}, {"set": {"q": 1}})})
    lg = logic(a={"trigger": {"event": "y"}, "start": "a", "blocks": {"a": {"emit": {"event": "x"}}}})
    with pytest.raises(ValueError, match="without end"):
        lg.adopt(f"{APP}:b", {"trigger": {"event": "x"}, "start": "a", "blocks": {"a": {"emit": {"event": "y"}}}})
    assert list(lg.definitions(APP).campaigns) == ["a"]  # the last good ones stay


def test_a_run_waiting_in_a_block_changed_elsewhere_ends_instead_of_failing():
    lg = logic(reminder=REMINDER)
    sim = Sim(lg, "workflow_runner")
    feed(sim, [event("u1", "Cart abandoned", T0, "derived")])
    changed = copy.deepcopy(REMINDER)
    changed["blocks"]["wait"] = {"wait": "1h", "next": "second"}  # no longer waits for Cart purchased
    lg.adopt(f"{APP}:reminder", changed)  # another bucket took it in; this one is not revisited yet
    feed(sim, [event("u1", "Cart purchased", T0 + MIN, "derived")])
    sim.clock(T0 + 3 * 86_400_000)
    assert not [r for role, _, r, _ in sim.outputs if role == "dead_letter"]
    assert not sim.entries.get(f"{APP}:u1", {"s": {"runs": {}}})["s"]["runs"]


def test_a_bad_event_is_a_dead_letter_and_the_person_goes_on():
    sim = Sim(WorkflowLogic({APP: {"w": parse_campaign("w", {"trigger": {"segment": "vip"}, "start": "a",
                                                                "blocks": {"a": {"in_app": {"body": "hi"}}}})}},
                            topics={"segments": "t.segments"}), "workflow_runner")
    bad = {"event_id": "s1", "app": APP, "kind": "segment", "event": "vip", "person_id": "u1", "ts": T0, "data": {}}
    sim.record(f"{APP}:u1", bad, T0)
    feed(sim, [segment_change({"app": APP, "segment": "vip", "person_id": "u1", "change": "entered", "ts": T0 + 1,
                               "version": 1})])
    sim.clock(T0 + 2000)  # the job's timers fire on whole seconds
    (dead,) = [r for role, _, r, _ in sim.outputs if role == "dead_letter"]
    assert dead["topic"] == "t.segments" and "change" in dead["reason"]
    assert [a["campaign"] for a in actions(sim)] == ["w"]


def test_templates_and_tracking_tokens():
    assert render("Hi {{ name | there }}, {{n}}", {"n": 3}) == "Hi there, 3"
    token = sign("s3cret", {"a": APP, "p": "u1", "id": "x", "c": "c", "l": "l"})
    assert token_app(token) == APP and verify("s3cret", token)["p"] == "u1"
    with pytest.raises(ValueError, match="does not match"):
        verify("other", token)
    forged = token.replace(token.split(".")[0], sign("s3cret", {"a": APP, "p": "u2", "id": "x", "c": "c", "l": "l"}).split(".")[0])
    with pytest.raises(ValueError, match="does not match"):
        verify("s3cret", forged)
    html = tracked('<a href="https://x.example/?a=1&amp;b=2">go</a>', "http://c", "s3cret",
                   {"a": APP, "p": "u1", "id": "x", "c": "c", "l": "l"})
    click = html.split('href="http://c/c/')[1].split('"')[0]
    assert verify("s3cret", click)["u"] == "https://x.example/?a=1&b=2" and '<img src="http://c/o/' in html


# -- exactly once under replays and restarts --------------------------------------------------
def property_logic() -> WorkflowLogic:
    return logic(reminder=REMINDER, free_movie_fans={**SEED, "blocks": {**SEED["blocks"],
                                                                        "limit": {"entry_limit": 3, "no": "plan"}}})


def _run(records, restarts: set[int]):
    """Feed the records; at each index in `restarts` the job restarts from a snapshot taken
    a few records earlier (its last checkpoint) and reads on from there. The actions are
    those a transactional sink commits: what came out since the snapshot is discarded."""
    sim = Sim(property_logic(), "workflow_runner")
    committed: list[dict] = []
    snapshot = (copy.deepcopy(sim.entries), sim.watermark, 0)
    i = 0
    restarts = set(restarts)
    while i < len(records):
        if i in restarts:
            restarts.discard(i)
            sim.entries, sim.watermark, i = copy.deepcopy(snapshot[0]), snapshot[1], snapshot[2]
            sim.outputs.clear()
            continue
        feed(sim, [records[i]])
        i += 1
        if i % 3 == 0:  # a checkpoint: outputs so far are committed
            committed += actions(sim)
            sim.outputs.clear()
            snapshot = (copy.deepcopy(sim.entries), sim.watermark, i)
    sim.clock(records[-1]["ts"] + 3 * 86_400_000)
    return committed + actions(sim)


people = st.sampled_from(["u1", "u2", "u3"])
names = st.sampled_from(["Movie watch", "Cart abandoned", "Cart purchased"])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(people, names, st.integers(0, 90)), min_size=1, max_size=40), st.data())
def test_restarts_and_arrival_order_give_every_action_exactly_once(calls, data):
    global _ids
    _ids = iter(range(10 ** 9))
    records = [props(p, T0, plan="free", email=f"{p}@x") for p in ("u1", "u2", "u3")]
    t = T0
    for person, name, minutes in calls:
        t += minutes * MIN
        records.append(event(person, name, t, "derived" if name.startswith("Cart") else "track"))
    restarts = data.draw(st.sets(st.integers(1, len(records) - 1), max_size=3))
    clean = _run(records, set())
    again = _run(records, restarts)
    assert as_set(clean) == as_set(again)
    assert len({a["action_id"] for a in clean}) == len(clean)  # ids are unique: delivery dedups by them
    # the same records delivered in any order before the clock moves: the same actions
    sim = Sim(property_logic(), "workflow_runner")
    for r in data.draw(st.permutations(records)):
        sim.record(f"{APP}:{r['person_id']}", r, r["ts"])
    sim.clock(records[-1]["ts"] + 3 * 86_400_000)
    assert as_set(actions(sim)) == as_set(clean)


def as_set(actions_: list[dict]) -> list[str]:
    return sorted(json.dumps(a, sort_keys=True) for a in actions_)


def test_yaml_bare_yes_and_no_keys_name_the_branches():
    import yaml
    node = yaml.safe_load("trigger: {event: x}\nstart: a\nblocks:\n  a: {in_segment: s, yes: b, no: c}\n"
                          "  b: {wait: 1h}\n  c: {wait: 2h}\n")
    assert True in node["blocks"]["a"]  # YAML 1.1 reads them as booleans
    c = parse_campaign("c", node)
    assert (c.blocks["a"].yes, c.blocks["a"].no) == ("b", "c")
