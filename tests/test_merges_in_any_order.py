"""The person hand-over (udfs/persons.py) against its promise: whatever the order in which
persons' records, merge notices, handoffs and the clock arrive, a per-person job decides as
if everything had come in time order. Checked with cart_timeout's logic (carts and visits
are what a merge must carry over) on generated identity histories: several anonymous ids and
users, chains of merges, a person merged into twice before the clock reaches the first."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from tests.conftest import BEGINNING, ONE_SECOND
from tests.persons_sim import Sim
from tests.test_carts import APP, CART, TIMEOUT, sim

IDS = ("a0", "a1", "a2", "u0", "u1")
gaps = st.one_of(st.integers(0, 10 * ONE_SECOND), st.integers(TIMEOUT - 5 * ONE_SECOND, TIMEOUT + 5 * ONE_SECOND),
                 st.just(3 * TIMEOUT))
steps = st.lists(st.tuples(gaps, st.one_of(
    st.tuples(st.just("track"), st.sampled_from(IDS)),
    st.tuples(st.sampled_from(["setCart", "cancelCart", "purchaseCart"]), st.sampled_from(IDS)),
    st.tuples(st.just("merge"), st.sampled_from(IDS), st.sampled_from(IDS)))), min_size=1, max_size=16)


def history(generated) -> list[tuple[str, dict]]:
    """identity_merge's tracktor.events for the generated calls, in time order: (person, record).
    A merge joins the persons of two ids; the first id's person is merged away."""
    person_of = {i: i for i in IDS}
    out, t = [], BEGINNING
    for n, (gap, call) in enumerate(generated):
        t += gap
        if call[0] == "merge":
            old, new = person_of[call[1]], person_of[call[2]]
            if old == new:
                continue
            for i in IDS:
                if person_of[i] == old:
                    person_of[i] = new
            out += [(old, record(old, f"e{n}a", "$merge", "merge", t, {"merged_into": new})),
                    (new, record(new, f"e{n}b", "$merge", "merge", t, {"merged": [old]}))]
        else:
            name, who = call
            kind, data = ("track", {}) if name == "track" else ("cart", CART)
            out.append((person_of[who], record(person_of[who], f"e{n}", name, kind, t, data)))
    return out


def record(person, eid, name, kind, t, data):
    return {"event_id": eid, "app": APP, "kind": kind, "event": name, "distinct_id": person, "person_id": person,
            "ts": t, "received_at": t, "data": data}


def finish(s: Sim, last: int) -> list[tuple]:
    """The clock far past the last record, every handoff read back (each may bring more)."""
    for _ in range(8):
        s.clock(last + 10 * TIMEOUT)
        s.deliver()
    assert not s.in_flight
    return sorted((r["event_id"], r["event"], r["person_id"], r["ts"], str(r["data"]))
                  for role, _, r, _ in s.outputs if role == "derived")


def in_time_order(records) -> list[tuple]:
    s = sim()
    for person, r in records:
        s.clock(r["ts"] - 1)
        s.deliver()
        s.record(f"{APP}:{person}", r, r["ts"])
        s.deliver()
    return finish(s, records[-1][1]["ts"])


def in_some_order(records, choices) -> list[tuple]:
    """Each person's records in their order (a Kafka partition's), persons interleaved, the
    clock moved and handoffs read back at moments `choices` picks; the clock never passes a
    record still to come (what the heartbeats promise)."""
    s, queues = sim(), {}
    for person, r in records:
        queues.setdefault(person, []).append(r)
    watermark = -2 ** 63
    for choice in choices:
        waiting = [p for p in sorted(queues) if queues[p]]
        if not waiting:
            break
        person = waiting[choice % len(waiting)]
        r = queues[person].pop(0)
        s.record(f"{APP}:{person}", r, r["ts"])
        if choice % 3 == 0:
            s.deliver(choice % 4)
        if choice % 5 == 0:
            nxt = min((q[0]["ts"] for q in queues.values() if q), default=r["ts"] + 1)
            watermark = max(watermark, nxt - 1)
            s.clock(watermark)
    for person in sorted(queues):
        for r in queues[person]:
            s.record(f"{APP}:{person}", r, r["ts"])
    return finish(s, records[-1][1]["ts"])


@settings(max_examples=400, deadline=None)
@given(steps, st.lists(st.integers(0, 10 ** 6), min_size=40, max_size=40))
def test_any_arrival_order_decides_as_the_time_order(generated, choices):
    records = history(generated)
    if records:
        assert in_some_order(records, choices) == in_time_order(records)


def test_a_person_merged_into_twice_before_the_clock_reaches_the_first_merge():
    """What the property found (a user identified on two devices, and every record read
    before the clock moved): the visit after the first merge is decided on what came before
    it, not on the second device's later activity."""
    records = history([(0, ("track", "a0")), (TIMEOUT - ONE_SECOND, ("merge", "a0", "u0")),
                       (TIMEOUT + 5 * ONE_SECOND, ("track", "u0")), (TIMEOUT, ("track", "a1")),
                       (ONE_SECOND, ("merge", "a1", "u0")), (ONE_SECOND, ("track", "u0"))])
    expected = in_time_order(records)
    assert [(n, p) for _, n, p, _, _ in expected] == [("Visited Site", "a0"), ("Visited Site", "u0"),
                                                       ("Visited Site", "a1")]
    s = sim()
    for person, r in sorted(records, key=lambda pr: pr[0] != "u0"):  # the survivor's records first
        s.record(f"{APP}:{person}", r, r["ts"])
    assert finish(s, records[-1][1]["ts"]) == expected
