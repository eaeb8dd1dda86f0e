"""udfs.identity without Flink: the seed's scenarios, and order-independence against a reference."""
from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from tests.conftest import BEGINNING, ONE_MINUTE
from tracktor.dev import envelopes as E
from udfs.identity import IdentityMerger, replay_canonical
from udfs.state import Cell, DictStore

APP = "app1"


def merger():
    return IdentityMerger(DictStore(), DictStore(), Cell())


def run(envs, m=None):
    m = m or merger()
    out = []
    for env in envs:
        out.extend(m.process(env))
    return m, out


def profile_of(m, distinct_id):
    from udfs.identity import visible
    person = m.canonical(distinct_id)
    group = m.groups.get(person)
    return visible(group["props"]) if group else {}


def test_anonymous_browsing_then_identify_merges_into_the_identified_person():
    anon = "a-3bxuAxl18r02UsdTUdk1Ri9"
    m, out = run([
        E.track(APP, anon, "Site visit", BEGINNING),
        E.identify(APP, "unicorn", anon, BEGINNING + ONE_MINUTE),
        E.track(APP, anon, "Free movie view", BEGINNING + 2 * ONE_MINUTE),
    ])
    assert m.canonical(anon) == "unicorn"
    events = [r for role, _, r in out if role == "events" and r["kind"] != "merge"]
    assert [e["person_id"] for e in events] == [anon, "unicorn"]
    notices = [(key, r["data"]) for role, key, r in out if role == "events" and r["kind"] == "merge"]
    assert notices == [(f"{APP}:{anon}", {"merged_into": "unicorn"}), (f"{APP}:unicorn", {"merged": [anon]})]
    identities = [r for role, _, r in out if role == "identities"]
    assert [(r["distinct_id"], r["person_id"]) for r in identities] == [(anon, "unicorn")]


def test_identify_from_a_known_id_only_switches():
    m, out = run([E.identify(APP, "bob", "alice", BEGINNING)])
    assert out == []
    assert m.canonical("alice") == "alice" and m.canonical("bob") == "bob"


def test_alias_of_two_identified_profiles_merges_properties_latest_wins():
    m, out = run([
        E.set_properties(APP, "alice", {"email": "old@example.com", "city": "Paris"}, BEGINNING),
        E.set_properties(APP, "alice2", {"email": "new@example.com", "plan": "gold"}, BEGINNING + ONE_MINUTE),
        E.alias(APP, "alice2", "alice", BEGINNING + 2 * ONE_MINUTE),
    ])
    assert m.canonical("alice2") == "alice"
    assert profile_of(m, "alice2") == {"email": "new@example.com", "city": "Paris", "plan": "gold"}
    profiles = [r for role, _, r in out if role == "profiles"]
    assert profiles[-2]["person_id"] == "alice2" and profiles[-2]["merged_into"] == "alice"
    assert profiles[-1]["person_id"] == "alice" and profiles[-1]["properties"]["plan"] == "gold"
    # the merged-away id keeps only its redirect: no group of its own
    assert m.groups.get("alice2") is None and m.ids.get("alice2") == "alice"


def test_null_deletes_a_property_and_arrays_are_kept_whole():
    m, _ = run([
        E.set_properties(APP, "u", {"delete_me": 1, "tags": ["a", "b"], "address": {"zip": "75001"}}, BEGINNING),
        E.set_properties(APP, "u", {"delete_me": None}, BEGINNING + ONE_MINUTE),
    ])
    assert profile_of(m, "u") == {"tags": ["a", "b"], "address": {"zip": "75001"}}


def test_an_older_set_arriving_late_does_not_resurrect_a_deleted_property():
    m, _ = run([
        E.set_properties(APP, "u", {"k": None}, BEGINNING + ONE_MINUTE),
        E.set_properties(APP, "u", {"k": "stale"}, BEGINNING),
    ])
    assert profile_of(m, "u") == {}


def test_an_email_that_is_not_a_string_goes_to_the_dead_letter_and_the_rest_is_kept():
    m, out = run([E.set_properties(APP, "u", {"email": 42, "age": 30}, BEGINNING)])
    dead = [r for role, _, r in out if role == "dead_letter"]
    assert len(dead) == 1 and "email" in dead[0]["reason"]
    assert profile_of(m, "u") == {"age": 30}


def test_a_chain_of_three_merges_ends_on_the_last_destination():
    m, _ = run([
        E.alias(APP, "a", "b", BEGINNING),
        E.alias(APP, "b", "c", BEGINNING + ONE_MINUTE),
        E.alias(APP, "c", "d", BEGINNING + 2 * ONE_MINUTE),
    ])
    assert {m.canonical(x) for x in "abcd"} == {"d"}


def test_a_cycle_converges_to_the_same_person_in_either_arrival_order():
    first = E.alias(APP, "a", "b", BEGINNING)
    second = E.alias(APP, "b", "a", BEGINNING + ONE_MINUTE)
    m1, _ = run([first, second])
    m2, _ = run([second, first])
    assert m1.canonical("a") == m1.canonical("b") == m2.canonical("a") == m2.canonical("b") == "b"


def test_a_replayed_merge_emits_nothing_new():
    merge = E.alias(APP, "a", "b", BEGINNING)
    m, first = run([merge])
    _, again = run([merge], m)
    assert first and again == []


def test_cart_calls_become_cart_events_on_the_person():
    m, out = run([
        E.alias(APP, "a-x", "shopper", BEGINNING),
        E.cart(APP, "a-x", "set", {"totalprice": 3.98, "products": []}, BEGINNING + ONE_MINUTE),
    ])
    event = [r for role, _, r in out if role == "events" and r["kind"] != "merge"][0]
    assert (event["kind"], event["event"], event["person_id"]) == ("cart", "setCart", "shopper")


def test_replay_canonical_follows_event_time_not_list_order():
    edges = [[2, "e2", "b", "a"], [1, "e1", "a", "b"]]
    assert replay_canonical(edges) == {"a": "b", "b": "b"}


# -- order independence -----------------------------------------------------------
IDS = ["a-1", "a-2", "a-3", "u1", "u2", "u3"]


def reference(envs):
    """The rules applied naively, in event-time order: a plain union-find and plain dicts."""
    parent, props = {}, {}

    def find(x):
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for env in sorted(envs, key=lambda e: (e["ts"], e["event_id"])):
        if env["type"] == "alias":
            src, dest = env["srcid"], env["destid"]
        elif env["type"] == "identify" and env["previous_id"].startswith("a-") and env["previous_id"] != env["id"]:
            src, dest = env["previous_id"], env["id"]
        else:
            src = dest = None
        if src:
            rs, rd = find(src), find(dest)
            if rs != rd:
                parent[rs] = rd
        if env["type"] == "set":
            for k, v in env["data"].items():
                props[(env["id"], k)] = max(props.get((env["id"], k), (-1, "", None)), (env["ts"], env["event_id"], v))
    persons = {x: find(x) for x in IDS}
    profiles = {}
    for (did, k), (ts, eid, v) in props.items():
        cur = profiles.setdefault(persons[did], {}).get(k)
        if cur is None or (ts, eid) > cur[:2]:
            profiles[persons[did]][k] = (ts, eid, v)
    return persons, {p: {k: t[2] for k, t in d.items() if t[2] is not None} for p, d in profiles.items()}


calls = st.one_of(
    st.tuples(st.just("alias"), st.sampled_from(IDS), st.sampled_from(IDS)),
    st.tuples(st.just("identify"), st.sampled_from(IDS), st.sampled_from(IDS)),
    st.tuples(st.just("set"), st.sampled_from(IDS), st.dictionaries(st.sampled_from(["city", "plan", "age"]),
                                                                   st.one_of(st.none(), st.integers(0, 3)), min_size=1)),
)


def build(calls_list):
    envs = []
    for i, (kind, x, y) in enumerate(calls_list):
        ts = BEGINNING + (i // 2) * ONE_MINUTE  # pairs share a timestamp: ties must break deterministically
        eid = f"e{i:03d}"
        if kind == "alias":
            envs.append(E.alias(APP, x, y, ts, event_id=eid))
        elif kind == "identify":
            envs.append(E.identify(APP, y, x, ts, event_id=eid))
        else:
            envs.append(E.set_properties(APP, x, y, ts, event_id=eid))
    return envs


@settings(max_examples=300, deadline=None)
@given(st.lists(calls, max_size=25), st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_reference_persons_and_profiles(calls_list, rnd):
    envs = build(calls_list)
    shuffled = envs[:]
    rnd.shuffle(shuffled)
    expected_persons, expected_profiles = reference(envs)
    for order in (envs, shuffled, shuffled + envs):  # the last one replays everything
        m, _ = run(order)
        assert {x: m.canonical(x) for x in IDS} == expected_persons
        got = {}
        for x in IDS:
            p = profile_of(m, x)
            if p:
                got[m.canonical(x)] = p
        assert got == {p: d for p, d in expected_profiles.items() if d}


def test_state_holds_nothing_for_visitors_who_never_merge_or_set_properties():
    m, _ = run([E.track(APP, f"a-{i}", "Site visit", BEGINNING + i) for i in range(100)])
    assert len(m.ids) == 0 and len(m.groups) == 0


# -- parallelism: apps spread over workers, each app's calls in their partition's order ------
APPS = ["app1", "app2", "app3", "app4", "app5"]
TOPICS = {"raw": "raw", "events": "events", "identities": "identities", "profiles": "profiles",
          "dead_letter": "dead_letter"}


class KeyedState:
    """Flink's keyed state as the job's function sees it: one state object per descriptor,
    shared by every key, whose contents are those of the current key."""

    def __init__(self):
        self.key, self.data = None, {}

    def map(self, name):
        state = self

        class Map:
            def _d(self):
                return state.data.setdefault((name, state.key), {})

            def get(self, k, default=None):
                return self._d().get(k, default)

            def put(self, k, v):
                self._d()[k] = v

            def remove(self, k):
                self._d().pop(k, None)
        return Map()

    def value(self, name):
        state = self

        class Value:
            def value(self):
                return state.data.get((name, state.key))

            def update(self, v):
                state.data[(name, state.key)] = v
        return Value()


def job_function(state: KeyedState):
    from udfs.identity import AppBundles
    return AppBundles(state.map("ids"), state.map("groups"), state.map("anonymous"), state.value("version"), TOPICS)


def run_bundles(envs, rnd, max_bundle: int):
    """Outputs per app through ONE function with shared keyed state, as a subtask runs it:
    each app's calls keep their order (one partition per app), bundles of any size up to
    `max_bundle`, the apps' bundles interleaved arbitrarily (all that changes between
    parallelism 1 and 4)."""
    import json
    queues = {app: [json.dumps(e) for e in envs if e["app"] == app] for app in APPS}
    state = KeyedState()
    fn = job_function(state)
    out = {app: [] for app in APPS}
    while any(queues.values()):
        app = rnd.choice([a for a in APPS if queues[a]])
        n = rnd.randint(1, max_bundle)
        bundle, queues[app] = queues[app][:n], queues[app][n:]
        state.key = app  # Flink sets the current key before each bundle
        result = fn.process(app, bundle, [0] * len(bundle))
        out[app].extend(result.records())
    return out, state


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(APPS), calls), max_size=40), st.randoms(use_true_random=False))
def test_outputs_and_state_are_the_same_at_parallelism_1_and_4_with_any_bundles(app_calls, rnd):
    envs = []
    for app in APPS:
        for env in build([c for a, c in app_calls if a == app]):
            envs.append({**env, "app": app, "event_id": f"{app}-{env['event_id']}"})
    one_at_a_time, state1 = run_bundles(envs, random.Random(0), max_bundle=1)
    interleaved, state2 = run_bundles(envs, rnd, max_bundle=7)
    assert interleaved == one_at_a_time
    assert {k: v for k, v in state1.data.items() if v} == {k: v for k, v in state2.data.items() if v}


def test_cached_store_reads_state_once_and_writes_through():
    from udfs.state import CachedStore

    class CountingStore(DictStore):
        reads = 0

        def get(self, key, default=None):
            CountingStore.reads += 1
            return super().get(key, default)

    state = CountingStore(a="x")
    cache = CachedStore(state, max_entries=3)
    assert [cache.get("a"), cache.get("a"), cache.get("missing"), cache.get("missing")] == ["x", "x", None, None]
    assert CountingStore.reads == 2
    cache.put("b", "y")
    cache.remove("a")
    assert state == {"b": "y"} and cache.get("a") is None
    for k in "cdef":  # past max_entries the cache starts over instead of growing
        cache.get(k)
    assert len(cache.cache) <= 3


def test_split_store_keeps_only_wholly_anonymous_persons_in_the_retained_store():
    from udfs.envelope import is_anonymous
    from udfs.identity import is_anonymous_group
    from udfs.state import SplitStore
    identified, anonymous = DictStore(), DictStore()
    store = SplitStore(identified, anonymous, is_anonymous_group, is_anonymous)
    store.put("a-1", {"members": ["a-1"], "p": 1})
    store.put("u1", {"members": ["u1"], "p": 2})
    assert set(anonymous) == {"a-1"} and set(identified) == {"u1"}
    assert store.get("a-1")["p"] == 1 and store.get("nobody") is None
    # an identified id merged into an anonymous one: the person is kept for good from now on
    store.put("a-1", {"members": ["a-1", "bob"], "p": 3})
    assert set(anonymous) == set() and identified["a-1"]["p"] == 3 and store.get("a-1")["p"] == 3
    store.remove("u1")
    store.remove("a-1")
    assert identified == {} and anonymous == {}


def test_an_identified_person_under_an_anonymous_id_never_expires_with_the_anonymous_ones():
    """alias(bob -> a-x): the person's canonical id is anonymous, but bob's properties must not
    be lost when the anonymous retention forgets the anonymous persons."""
    from udfs.envelope import is_anonymous
    from udfs.identity import is_anonymous_group
    from udfs.state import SplitStore
    identified, anonymous = DictStore(), DictStore()
    m = IdentityMerger(DictStore(), SplitStore(identified, anonymous, is_anonymous_group, is_anonymous), Cell())
    run([E.set_properties(APP, "a-x", {"seen": 1}, BEGINNING),
         E.set_properties(APP, "bob", {"email": "bob@example.com"}, BEGINNING + 1),
         E.alias(APP, "bob", "a-x", BEGINNING + 2)], m)
    assert m.canonical("bob") == "a-x"
    anonymous.clear()  # what the retention does to every anonymous person in the end
    assert profile_of(m, "bob") == {"seen": 1, "email": "bob@example.com"}


def unsigned(env):
    return {**env, "unsigned_source": True}


def test_an_unsigned_anonymous_source_merges_only_while_its_person_is_anonymous():
    anon, other = "a-3bxuAxl18r02UsdTUdk1Ri9", "a-xrWNmprAoEJM507bt7m5LKg"
    m, out = run([
        E.track(APP, anon, "Site visit", BEGINNING),
        unsigned(E.alias(APP, anon, "victim", BEGINNING + 1)),       # the visitor's browser joins an account
        E.track(APP, other, "Site visit", BEGINNING + 2),
        unsigned(E.alias(APP, other, anon, BEGINNING + 3)),          # still anonymous + anonymous: fine
    ])
    assert m.canonical(anon) == "victim" and m.canonical(other) == "victim"
    # an attacker who learnt the victim's old anonymous id cannot merge it into themselves
    _, out = run([unsigned(E.alias(APP, anon, "attacker", BEGINNING + 4)),
                  unsigned(E.identify(APP, "attacker", other, BEGINNING + 5))], m)
    assert m.canonical(anon) == "victim" and m.canonical("attacker") == "attacker"
    reasons = [r["reason"] for role, _, r in out if role == "dead_letter"]
    assert len(reasons) == 2 and all("already belongs to the identified person 'victim'" in r for r in reasons)
    assert [role for role, _, _ in out] == ["dead_letter", "dead_letter"]


def test_repeated_aliases_between_merged_ids_add_no_edges():
    m, _ = run([E.alias(APP, "a", "b", BEGINNING)])
    _, out = run([E.alias(APP, x, y, BEGINNING + 10 + i) for i, (x, y) in enumerate([("a", "b"), ("b", "a")] * 50)], m)
    assert out == [] and len(m.groups.get("b")["merges"]) == 1
    # an older alias that joins them first still changes who they are, in any order
    _, out = run([E.alias(APP, "b", "a", BEGINNING - 1)], m)
    assert m.canonical("b") == "a" and len(m.groups.get("a")["merges"]) == 1


def test_a_person_has_at_most_max_members_ids_and_a_merge_past_it_goes_to_the_dead_letters():
    from udfs.limits import MAX_MEMBERS
    m, _ = run([E.alias(APP, f"id{i}", "hub", BEGINNING + i) for i in range(MAX_MEMBERS - 1)])
    assert len(m.groups.get("hub")["members"]) == MAX_MEMBERS
    assert len(m.groups.get("hub")["merges"]) == MAX_MEMBERS - 1
    _, out = run([E.alias(APP, "one-too-many", "hub", BEGINNING + MAX_MEMBERS)], m)
    assert [role for role, _, _ in out] == ["dead_letter"] and f"more than {MAX_MEMBERS} ids" in out[0][2]["reason"]
    assert m.canonical("one-too-many") == "one-too-many"


def test_properties_past_the_caps_are_refused_and_existing_ones_still_change():
    from udfs.limits import MAX_PROFILE_BYTES, MAX_PROPERTIES
    m, _ = run([E.set_properties(APP, "u", {f"k{i}": i for i in range(MAX_PROPERTIES)}, BEGINNING)])
    _, out = run([E.set_properties(APP, "u", {"k0": "changed", "new": 1}, BEGINNING + 1)], m)
    dead = [r for role, _, r in out if role == "dead_letter"]
    assert len(dead) == 1 and f"more than {MAX_PROPERTIES} properties" in dead[0]["reason"] and '"new"' in dead[0]["record"]
    profile = profile_of(m, "u")
    assert profile["k0"] == "changed" and "new" not in profile and len(profile) == MAX_PROPERTIES
    # bytes: a person cannot outgrow a Kafka record either
    m, out = run([E.set_properties(APP, "v", {f"big{i}": "x" * 30_000}, BEGINNING + i) for i in range(20)])
    assert len(str(profile_of(m, "v"))) <= MAX_PROFILE_BYTES
    assert any(role == "dead_letter" for role, _, _ in out)


def test_a_merge_past_the_property_caps_keeps_the_newest_in_any_order():
    from udfs.limits import MAX_PROPERTIES
    half = MAX_PROPERTIES // 2 + 10
    a = E.set_properties(APP, "pa", {f"a{i}": i for i in range(half)}, BEGINNING)
    b = E.set_properties(APP, "pb", {f"b{i}": i for i in range(half)}, BEGINNING + 1)
    merge = E.alias(APP, "pa", "pb", BEGINNING + 2)
    m1, out = run([a, b, merge])
    m2, _ = run([b, a, merge])
    assert profile_of(m1, "pa") == profile_of(m2, "pa")
    assert len(profile_of(m1, "pa")) == MAX_PROPERTIES and all(f"b{i}" in profile_of(m1, "pa") for i in range(half))
    assert any(role == "dead_letter" and "oldest were dropped" in r["reason"] for role, _, r in out)


def test_buffered_store_writes_each_changed_key_once_at_flush():
    from udfs.state import BufferedCell, BufferedStore

    state, cell = DictStore(a=1, b=2), Cell(5)
    store, version = BufferedStore(state), BufferedCell(cell)
    store.put("a", 10)
    store.put("a", 11)
    store.remove("b")
    store.put("c", 3)
    version.update(version.value() + 1)
    assert (store.get("a"), store.get("b"), store.get("c")) == (11, None, 3)
    assert state == {"a": 1, "b": 2} and cell.value() == 5  # nothing written before the flush
    store.flush()
    version.flush()
    assert state == {"a": 11, "c": 3} and cell.value() == 6
    state.put("a", 12)  # after a flush the next bundle reads the state again
    assert store.get("a") == 12 and version.value() == 6


@settings(max_examples=200, deadline=None)
@given(st.lists(calls, max_size=30), st.lists(st.integers(1, 6), min_size=1))
def test_bundles_of_any_size_with_buffered_state_give_the_same_outputs_and_state(calls_list, sizes):
    """The job hands calls over in bundles and writes state back once per bundle: whatever the
    bundle sizes, the outputs and the state it leaves are those of one call at a time."""
    from udfs.state import BufferedCell, BufferedStore, CachedStore

    envs = build(calls_list)
    plain, plain_out = run(envs)
    ids, groups, version = DictStore(), DictStore(), Cell()
    buffers = (BufferedStore(ids), BufferedStore(groups), BufferedCell(version))
    m = IdentityMerger(CachedStore(buffers[0]), buffers[1], buffers[2])
    out, i, sizes = [], 0, iter(sizes * (len(envs) + 1))
    while i < len(envs):
        n = next(sizes)
        for env in envs[i:i + n]:
            out.extend(m.process(env))
        for b in buffers:
            b.flush()
        i += n
    assert out == plain_out
    assert (ids, groups, version.value()) == (plain.ids, plain.groups, plain.version.value())


def test_a_deleted_person_leaves_no_state_tombstones_every_key_and_each_id_is_told():
    t = BEGINNING
    m, _ = run([E.set_properties(APP, "a-1", {"name": "Ann"}, t), E.identify(APP, "ann", "a-1", t + 1),
                E.alias(APP, "ann-old", "ann", t + 2), E.track(APP, "bob", "x", t + 3)])
    m, out = run([E.delete(APP, "a-1", t + 4, event_id="del")], m)
    ids = ["a-1", "ann", "ann-old"]
    assert dict(m.ids) == {} and dict(m.groups) == {}  # bob never had a group of his own
    tombstones = sorted((role, key) for role, key, record in out if record is None)
    assert tombstones == sorted((role, f"{APP}:{i}") for role in ("identities", "profiles") for i in ids)
    notices = [(key, r["event"], r["data"]) for role, key, r in out if role == "events"]
    assert notices == [(f"{APP}:{i}", "$delete", {"person_id": "ann", "ids": ids}) for i in ids]
    _, after = run([E.track(APP, "ann", "back", t + 5)], m)  # the id again: a new person
    assert after[0][2]["person_id"] == "ann" and m.canonical("a-1") == "a-1"
