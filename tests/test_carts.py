"""cart_timeout's decisions (udfs/carts.py) and the person hand-over (udfs/persons.py) on a
simulated clock: abandoned, canceled and purchased carts, Visited Site, merges in any order
of arrival, and a property test against a reference computed from the sorted history."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from tests.conftest import BEGINNING, ONE_MINUTE, ONE_SECOND
from tests.persons_sim import Sim
from udfs.carts import CartLogic, CartSettings, check_cart
from udfs.envelope import BadRecord

APP = "shop"
TIMEOUT = 30 * ONE_MINUTE
CART = {"totalprice": 3.98, "products": [{"name": "Marshmallows 1kg pack", "price": 1.99, "count": 2}]}
ALL = CartSettings(TIMEOUT, TIMEOUT)


def sim(settings=ALL, at_once: bool = False) -> Sim:
    return Sim(CartLogic({APP: settings}), "cart_timeout", at_once)


def event(person, name, t, kind="cart", data=None, eid=None):
    return {"event_id": eid or f"{person}-{name}-{t}", "app": APP, "kind": kind, "event": name,
            "distinct_id": person, "person_id": person, "ts": t, "received_at": t,
            "data": CART if data is None and kind == "cart" else (data or {})}


def feed(s: Sim, *records, clock=None):
    for rec in records:
        s.record(f"{APP}:{rec['person_id']}", rec, rec["received_at"])
    if clock is not None:
        s.clock(clock)


def names(s: Sim, person=None):
    return [(n, t) for n, p, t, _ in s.derived() if person is None or p == person and n != "Visited Site"]


def test_a_cart_left_alone_is_abandoned_once_at_its_due_time_with_its_cart():
    s = sim()
    feed(s, event("u", "setCart", BEGINNING), clock=BEGINNING + TIMEOUT - 1)
    assert names(s, "u") == []  # not early
    s.clock(BEGINNING + TIMEOUT + 10 * ONE_MINUTE)
    s.clock(BEGINNING + 10 * TIMEOUT)
    abandoned = [r for role, _, r, _ in s.outputs if role == "derived" and r["event"] == "Cart abandoned"]
    assert len(abandoned) == 1
    assert abandoned[0]["ts"] == BEGINNING + TIMEOUT and abandoned[0]["data"] == {
        "cart": CART, "age_ms": TIMEOUT, "set_at": BEGINNING}
    assert abandoned[0]["event_id"] == f"u-setCart-{BEGINNING}:abandoned"


@pytest.mark.parametrize("stop, derived", [("purchaseCart", "Cart purchased"), ("cancelCart", "Cart canceled")])
def test_a_cart_purchased_or_canceled_in_time_is_not_abandoned(stop, derived):
    s = sim()
    feed(s, event("u", "setCart", BEGINNING), event("u", stop, BEGINNING + 5 * ONE_MINUTE), clock=BEGINNING + 5 * TIMEOUT)
    assert names(s, "u") == [(derived, BEGINNING + 5 * ONE_MINUTE)]


def test_new_cart_data_restarts_the_timer_and_the_last_cart_is_the_one_abandoned():
    s = sim()
    edited = {**CART, "totalprice": 1.99}
    feed(s, event("u", "setCart", BEGINNING), event("u", "setCart", BEGINNING + 20 * ONE_MINUTE, data=edited),
         clock=BEGINNING + 5 * TIMEOUT)
    abandoned = [r for role, _, r, _ in s.outputs if role == "derived" and r["event"] == "Cart abandoned"]
    assert [(r["ts"], r["data"]["cart"]) for r in abandoned] == [(BEGINNING + 20 * ONE_MINUTE + TIMEOUT, edited)]


def test_an_event_out_of_order_within_the_disorder_never_fires_a_timer_early():
    s = sim()
    # the purchase (just before the due time) arrives after a later page view that moved the clock
    feed(s, event("u", "setCart", BEGINNING))
    feed(s, event("u", "Page", BEGINNING + TIMEOUT + ONE_SECOND, kind="track"), clock=BEGINNING + TIMEOUT - ONE_SECOND)
    feed(s, event("u", "purchaseCart", BEGINNING + TIMEOUT - 500), clock=BEGINNING + 5 * TIMEOUT)
    assert ("Cart abandoned", BEGINNING + TIMEOUT) not in names(s, "u")
    assert ("Cart purchased", BEGINNING + TIMEOUT - 500) in names(s, "u")


def test_visited_site_marks_the_first_event_after_an_inactivity_gap():
    s = sim()
    t = BEGINNING
    feed(s, *(event("u", "Page", t + m * ONE_MINUTE, kind="track") for m in (0, 10, 20, 60, 65)),
         clock=t + 10 * TIMEOUT)
    assert [(n, ts) for n, p, ts, _ in s.derived()] == [("Visited Site", t), ("Visited Site", t + 60 * ONE_MINUTE)]


def test_disabled_advanced_events_are_not_emitted():
    s = sim(CartSettings(TIMEOUT, TIMEOUT, frozenset({"cart_purchased"})))
    feed(s, event("u", "setCart", BEGINNING), event("v", "setCart", BEGINNING), event("v", "purchaseCart", BEGINNING + 1),
         clock=BEGINNING + 5 * TIMEOUT)
    assert [n for n, *_ in s.derived()] == ["Cart purchased"]


def test_state_is_forgotten_once_the_carts_are_decided_and_the_visit_is_over():
    s = sim()
    feed(s, event("u", "setCart", BEGINNING), event("u", "Page", BEGINNING + 10 * ONE_MINUTE, kind="track"),
         clock=BEGINNING + TIMEOUT + ONE_SECOND)
    assert s.entries[f"{APP}:u"]["s"]["carts"] == []  # decided, but the visit is not over yet
    s.clock(BEGINNING + 10 * ONE_MINUTE + TIMEOUT + ONE_SECOND)
    assert s.entries == {}


@pytest.mark.parametrize("last", ["setCart", "purchaseCart"])
def test_a_cart_timeout_longer_than_the_visit_gap_still_fires_and_the_person_is_forgotten(last):
    """With the visit's end due first while a cart waits, the person was woken then, nothing
    changed, and no later wake time was set: the cart was never abandoned (or a purchase,
    kept a timeout to stop a merged-in cart, kept the person for good)."""
    s = sim(CartSettings(2 * TIMEOUT, TIMEOUT))
    feed(s, event("u", "setCart", BEGINNING), *([event("u", last, BEGINNING + ONE_MINUTE)] if last != "setCart" else []),
         clock=BEGINNING + 5 * TIMEOUT)
    assert [n for n, _ in names(s, "u")] == (["Cart abandoned"] if last == "setCart" else ["Cart purchased"])
    assert s.entries == {}


@pytest.mark.parametrize("cart, reason", [
    ({"totalprice": "lots", "products": []}, "totalprice must be a number"),
    ({"totalprice": 1, "products": "two"}, "products must be a list"),
    ({"totalprice": 1, "products": [{"price": 1}]}, "product 0 needs a name"),
    ({"totalprice": 1, "products": [{"name": "x", "price": "cheap"}]}, "needs a numeric price"),
    ({"totalprice": 1, "products": [{"name": "x", "price": 1, "count": 0}]}, "a whole number >= 1"),
    ([1, 2], "not an object"),
])
def test_invalid_carts_are_refused_with_the_reason(cart, reason):
    with pytest.raises(BadRecord, match=reason):
        check_cart(cart)
    s = sim()
    with pytest.raises(BadRecord):
        feed(s, event("u", "setCart", BEGINNING, data=cart))


# -- merges --------------------------------------------------------------------------------
def notice(person, t, **data):
    return {"event_id": f"merge-{person}-{t}", "app": APP, "kind": "merge", "event": "$merge", "distinct_id": person,
            "person_id": person, "ts": t, "received_at": t, "data": data}


ANON, USER = "a-3bxuAxl18r02UsdTUdk1Ri9", "unicorn"


def merge_scenario(order: str) -> Sim:
    """A cart set while anonymous, identify (merge a- into unicorn), purchase after it — with
    the survivor's notice, the handoff and its later events arriving in different orders."""
    s = sim()
    t = BEGINNING
    feed(s, event(ANON, "Page", t, kind="track"), event(ANON, "setCart", t + ONE_MINUTE))
    merged_away, survivor = notice(ANON, t + 2 * ONE_MINUTE, merged_into=USER), notice(USER, t + 2 * ONE_MINUTE, merged=[ANON])
    later = event(USER, "purchaseCart", t + 3 * ONE_MINUTE)
    feed(s, merged_away)
    if order == "notice first":
        feed(s, survivor, later, clock=t + 2 * ONE_MINUTE + 5 * ONE_SECOND)
        s.deliver()
    elif order == "handoff first":
        s.clock(t + 2 * ONE_MINUTE + 5 * ONE_SECOND)
        s.deliver()  # the handoff reaches the survivor before its own notice
        feed(s, survivor, later)
    else:  # the clock runs far ahead before the handoff is read
        feed(s, survivor, later, clock=t + 10 * TIMEOUT)
        s.deliver()
    s.clock(t + 10 * TIMEOUT)
    s.deliver()
    s.clock(t + 20 * TIMEOUT)
    return s


@pytest.mark.parametrize("order", ["notice first", "handoff first", "clock ahead"])
def test_a_cart_across_an_identify_is_one_cart_of_one_person_in_any_order(order):
    s = merge_scenario(order)
    derived = [(n, p) for n, p, _, _ in s.derived()]
    assert ("Cart purchased", USER) in derived
    assert not any(n == "Cart abandoned" for n, _ in derived)  # neither for the anonymous id nor the person
    assert [n for n, p in derived if p == ANON] == ["Visited Site"]
    assert s.entries.get(f"{APP}:{ANON}") == {"to": USER}  # a redirect is all that is left of it
    assert sorted(s.derived()) == sorted(merge_scenario("notice first").derived())


def test_a_record_that_reaches_a_merged_away_person_is_forwarded_to_the_survivor():
    s = sim()
    feed(s, event(ANON, "Page", BEGINNING, kind="track"), notice(ANON, BEGINNING + 1, merged_into=USER),
         notice(USER, BEGINNING + 1, merged=[ANON]), clock=BEGINNING + 5 * ONE_SECOND)
    s.deliver()
    feed(s, event(ANON, "setCart", BEGINNING + 2 * ONE_SECOND))  # late, still for the old id
    s.deliver()
    s.clock(BEGINNING + 5 * TIMEOUT)
    assert ("Cart abandoned", USER) in [(n, p) for n, p, _, _ in s.derived()]


# -- property: any arrival order within the allowed disorder gives the reference -------------
DISORDER = 2 * ONE_SECOND


def reference(history):
    """Derived cart events from the whole history in time order, computed directly."""
    carts = sorted((t, eid, name) for t, eid, name in history if name in ("setCart", "cancelCart", "purchaseCart"))
    out = []
    for i, (t, eid, name) in enumerate(carts):
        if name == "setCart":
            following = carts[i + 1][0] if i + 1 < len(carts) else None
            if following is None or following > t + TIMEOUT:
                out.append(("Cart abandoned", t + TIMEOUT))
        else:
            out.append(({"cancelCart": "Cart canceled", "purchaseCart": "Cart purchased"}[name], t))
    return sorted(out)


# gaps between calls: short ones, and ones within a few seconds of the timeout (where an
# early or late decision shows)
gaps = st.one_of(st.integers(0, 10 * ONE_SECOND), st.integers(TIMEOUT - 5 * ONE_SECOND, TIMEOUT + 5 * ONE_SECOND))
calls = st.lists(st.tuples(gaps, st.sampled_from(["setCart", "cancelCart", "purchaseCart"])), min_size=1, max_size=12)


@settings(max_examples=400, deadline=None)
@given(calls, st.lists(st.integers(0, DISORDER), min_size=12, max_size=12))
def test_any_arrival_order_within_the_disorder_gives_the_reference(cart_calls, delays):
    history, t = [], BEGINNING
    for i, (gap, name) in enumerate(cart_calls):
        t += gap
        history.append((t, f"e{i:02d}", name))
    # each record arrives up to DISORDER late; the clock is the latest time seen less DISORDER
    arrivals = sorted(history, key=lambda h: (h[0] + delays[int(h[1][1:])], h[1]))
    s = sim(CartSettings(TIMEOUT, TIMEOUT, frozenset({"cart_abandoned", "cart_canceled", "cart_purchased"})))
    latest = -2 ** 63
    for t, eid, name in arrivals:
        feed(s, event("u", name, t, eid=eid))
        latest = max(latest, t)
        s.clock(latest - DISORDER)
    s.clock(latest + 2 * TIMEOUT)
    assert sorted((n, t) for n, _, t, _ in s.derived()) == reference(history)
