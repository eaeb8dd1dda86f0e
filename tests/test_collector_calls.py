"""udfs.collector without HTTP: parameters, JavaScript-style data, signatures, envelopes."""
from __future__ import annotations

import json
import urllib.parse

import jsonschema
import pytest

from tests.test_schemas import SCHEMAS
from tracktor.config import App
from tracktor.collector.calls import CallError, envelope, method_of, parse_data, query_params, signature, signature_ok
from udfs.envelope import new_event_id

SECRET = "2D8CarQ4rX3WvH6TK7DpJDk5"
OPEN = App(sid="open", name="Open", secret=SECRET)
SIGNED = App(sid="signed", name="Signed", secret=SECRET, signed_only=True)
NOW = 1_767_225_600_000
ANON = "a-3bxuAxl18r02UsdTUdk1Ri9"  # the seed's anonymous id: a- and 23 base62 characters
TS = "1429186474"


def test_the_seeds_signature_example():
    assert signature(SECRET, "5115") == "9622E88BED0B5BC186286CB9504A02E5F3B4207DCA0AB23CA4FBDDFC15627E2F"
    assert signature_ok(SECRET, "5115", "9622e88bed0b5bc186286cb9504a02e5f3b4207dca0ab23ca4fbddfc15627e2f")
    assert not signature_ok(SECRET, "5116", "9622E88BED0B5BC186286CB9504A02E5F3B4207DCA0AB23CA4FBDDFC15627E2F")
    assert not signature_ok(SECRET, "5115", None)


@pytest.mark.parametrize("text, value", [
    ("{billing_plan:'Gold'}", {"billing_plan": "Gold"}),
    ("{category:'tires',item:'Acme inc R14',rating:5}", {"category": "tires", "item": "Acme inc R14", "rating": 5}),
    ('{"a": [1, 2.5, null, true], "b": {"c": "d"}}', {"a": [1, 2.5, None, True], "b": {"c": "d"}}),
    ("{quote:'it\\'s', dq:'say \"hi\"', tags:['x','y'], gone:null}", {"quote": "it's", "dq": 'say "hi"', "tags": ["x", "y"], "gone": None}),
])
def test_data_in_json_or_the_seeds_javascript_style(text, value):
    assert parse_data(text) == value


@pytest.mark.parametrize("text", ["[1,2]", "{a:", "'just a string'", "{a: @}"])
def test_data_that_is_no_object_is_refused(text):
    with pytest.raises(ValueError):
        parse_data(text)


def test_the_seeds_example_urls_sent_to_track_are_the_calls_they_evidently_are():
    assert method_of("track", {"data": "{billing_plan:'Gold'}"}) == "set"
    assert method_of("track", {"srcid": "a-x123124123", "destid": "unicorn"}) == "alias"
    assert method_of("track", {"action": "rated item", "data": "{}"}) == "track"


def test_envelopes_match_the_raw_schema():
    v = jsonschema.Draft202012Validator(SCHEMAS["tracktor.raw"])
    calls = [
        ("track", {"ts": "1429186474", "id": "unicorn", "action": "rated item", "data": "{category:'tires'}"}),
        ("set", {"ts": "1429186474", "id": "unicorn", "data": "{billing_plan:'Gold'}"}),
        ("alias", {"ts": "1429186474", "srcid": "a-x123124123", "destid": "unicorn"}),
        ("identify", {"ts": 1429186474123, "id": "unicorn", "previous_id": "a-x123124123"}),
        ("setCart", {"ts": 1429186474, "id": "unicorn", "cart": {"totalprice": 3.98, "products": []}}),
    ]
    for method, params in calls:
        env = envelope(method, params, OPEN, NOW)
        v.validate(env)
        assert env["app"] == "open" and env["received_at"] == NOW
    assert envelope("track", calls[0][1], OPEN, NOW)["ts"] == 1429186474000
    assert envelope(*calls[3], OPEN, NOW)["ts"] == 1429186474123


@pytest.mark.parametrize("method, params, status, reason", [
    ("track", {"id": "u", "action": "x"}, 400, "missing parameter 'ts'"),
    ("track", {"ts": "soon", "id": "u", "action": "x"}, 400, "'ts' must be a Unix timestamp"),
    ("track", {"ts": "1429186474", "action": "x"}, 400, "missing parameter 'id'"),
    ("track", {"ts": "1429186474", "id": "u"}, 400, "missing parameter 'action'"),
    ("track", {"ts": "1429186474", "id": "u" * 257, "action": "x"}, 400, "longer than 256"),
    ("set", {"ts": "1429186474", "id": "u"}, 400, "missing parameter 'data'"),
    ("set", {"ts": "1429186474", "id": "u", "data": "[1]"}, 400, "'data' is not a JSON object"),
    ("alias", {"ts": "1429186474", "srcid": "a"}, 400, "missing parameter 'destid'"),
    ("teleport", {"ts": "1429186474", "id": "u"}, 400, "unknown method"),
    ("track", {"ts": "1429186474", "id": "u", "action": "Letter opened"}, 400, "the pipeline makes itself"),
    ("track", {"ts": "1429186474", "id": "u", "action": "Campaign step"}, 400, "the pipeline makes itself"),
])
def test_bad_calls_say_which_parameter(method, params, status, reason):
    with pytest.raises(CallError) as err:
        envelope(method, params, OPEN, NOW)
    assert err.value.status == status and reason in err.value.reason


def test_a_signed_only_app_refuses_unsigned_or_wrongly_signed_calls():
    good = signature(SECRET, "5115")
    assert envelope("track", {"ts": "1429186474", "id": "5115", "action": "x", "sign": good.lower()}, SIGNED, NOW)
    for sign in (None, "00" * 32, signature(SECRET, "5116")):
        with pytest.raises(CallError) as err:
            envelope("track", {"ts": "1429186474", "id": "5115", "action": "x", "sign": sign}, SIGNED, NOW)
        assert err.value.status == 403
    with pytest.raises(CallError, match="destsign"):
        envelope("alias", {"ts": "1429186474", "srcid": ANON, "destid": "5115", "sign": good}, SIGNED, NOW)
    assert envelope("alias", {"ts": "1429186474", "srcid": ANON, "destid": "5115", "destsign": good}, SIGNED, NOW)
    # an open app takes unsigned calls
    assert json.dumps(envelope("track", {"ts": "1429186474", "id": "5115", "action": "x"}, OPEN, NOW))


def test_a_signed_only_alias_needs_the_source_signed_unless_it_is_strictly_anonymous():
    dest = {"destid": "5115", "destsign": signature(SECRET, "5115")}
    # a browser's anonymous id may join its account unsigned; the envelope says so
    env = envelope("alias", {"ts": TS, "srcid": ANON, **dest}, SIGNED, NOW)
    assert env["unsigned_source"] is True
    # anyone else's id needs srcsign: the attack of merging a victim into oneself is refused
    for src in ("victim", "a-x123124123", "a-" + "x" * 22, "a-" + "x" * 24, "a-" + "x" * 22 + "!"):
        with pytest.raises(CallError) as err:
            envelope("alias", {"ts": TS, "srcid": src, **dest}, SIGNED, NOW)
        assert err.value.status == 403 and "'srcsign' missing for srcid" in err.value.reason
    with pytest.raises(CallError, match="'srcsign' does not match"):
        envelope("alias", {"ts": TS, "srcid": "victim", "srcsign": signature(SECRET, "other"), **dest}, SIGNED, NOW)
    signed = envelope("alias", {"ts": TS, "srcid": "victim", "srcsign": signature(SECRET, "victim"), **dest}, SIGNED, NOW)
    assert "unsigned_source" not in signed
    # the seed's example alias still works on an app that is not signed-only
    assert "unsigned_source" not in envelope("alias", {"ts": TS, "srcid": "a-x123124123", "destid": "unicorn"}, OPEN, NOW)


def test_a_signed_only_identify_follows_the_same_rule_for_its_previous_id():
    me = {"id": "5115", "sign": signature(SECRET, "5115")}
    assert envelope("identify", {"ts": TS, "previous_id": ANON, **me}, SIGNED, NOW)["unsigned_source"] is True
    with pytest.raises(CallError, match="'previous_sign' missing for previous_id 'a-x123124123'"):
        envelope("identify", {"ts": TS, "previous_id": "a-x123124123", **me}, SIGNED, NOW)
    ok = envelope("identify", {"ts": TS, "previous_id": "a-x123124123", "previous_sign": signature(SECRET, "a-x123124123"),
                               **me}, SIGNED, NOW)
    assert "unsigned_source" not in ok
    # from a known id identify only switches: nothing is merged, so nothing more is asked
    assert "unsigned_source" not in envelope("identify", {"ts": TS, "previous_id": "alice", **me}, SIGNED, NOW)


@pytest.mark.parametrize("params, reason", [
    ({"data": '{"a":' * 21 + "1" + "}" * 21}, "nests deeper than 20 levels"),
    ({"data": '{"a":' * 5000 + "1" + "}" * 5000}, "nests deeper than 20 levels"),
    ({"data": "{a:" * 253 + "1" + "}" * 253}, "nests deeper than 20 levels"),  # the ~6 KB GET that stopped the job
    ({"data": '{"a": ' + "[" * 25 + "]" * 25 + "}"}, "nests deeper than 20 levels"),
    ({"data": '{"big": 123456789012345678901234567890}'}, "outside 64-bit integers"),
    ({"data": '{"n": NaN}'}, "NaN is not a JSON value"),
    ({"data": '{"n": -Infinity}'}, "not a JSON object"),
    ({"data": '{"n": 1e400}'}, "which JSON cannot carry"),
    ({"data": {"big": 2 ** 64}}, "outside 64-bit integers"),
    ({"ts": str(NOW // 1000 + 3601)}, "more than 1 hour in the future"),
    ({"ts": "253402300799"}, "before the app's history start"),  # 9999 in seconds has 12 digits: read as ms, 1978
    ({"ts": "253402300799000"}, "out of range"),                   # 9999 in ms
    ({"ts": str(NOW // 1000 * 100)}, "before the app's history start"),
    ({"ts": "946684799"}, "before the app's history start"),
])
def test_values_the_pipeline_cannot_carry_are_refused_with_the_limit(params, reason):
    call = {"ts": TS, "id": "u", "data": "{}", **params}
    with pytest.raises(CallError) as err:
        envelope("set", call, OPEN, NOW)
    assert err.value.status == 400 and reason in err.value.reason


def test_a_call_over_the_size_limit_is_413_and_one_under_it_passes():
    from tracktor.collector.calls import serialized
    from udfs.limits import MAX_CALL_BYTES
    small = envelope("track", {"ts": TS, "id": "u", "action": "x", "data": {"s": "x" * 1000}}, OPEN, NOW)
    assert len(serialized(small)) < MAX_CALL_BYTES
    big = envelope("track", {"ts": TS, "id": "u", "action": "x", "data": {"s": "x" * MAX_CALL_BYTES}}, OPEN, NOW)
    with pytest.raises(CallError) as err:
        serialized(big)
    assert err.value.status == 413 and f"{MAX_CALL_BYTES:,} bytes per call" in err.value.reason


def test_every_generated_envelope_round_trips_through_a_collector_call():
    from tracktor.dev.envelopes import to_call
    from tracktor.dev.sample_data import Generator
    apps = {sid: App(sid=sid, name=sid, secret=SECRET) for sid in ("demo-video", "demo-shop")}
    for env in Generator(seed=4, people=100):
        call = to_call(env)
        got = envelope(call.pop("method"), call, apps[env["app"]], env["received_at"])
        assert {**got, "event_id": env["event_id"]} == env


def test_a_client_event_id_is_kept_and_checked():
    params = {"ts": "1429186474", "id": "u1", "action": "a"}
    assert envelope("track", {**params, "event_id": "c0123456789abcdefXYZ_-"}, OPEN, NOW)["event_id"] == "c0123456789abcdefXYZ_-"
    assert len(envelope("track", params, OPEN, NOW)["event_id"]) == 32
    for bad in ("short", "x" * 65, "has space in it ok", 12345678901234567):
        with pytest.raises(CallError, match="'event_id'"):
            envelope("track", {**params, "event_id": bad}, OPEN, NOW)


def test_new_event_ids_are_unique_and_differ_in_a_forked_child():
    import os
    ids = {new_event_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child writes its first id and leaves at once
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    assert child[:16] != new_event_id()[:16] and child not in ids


def test_query_parameters_are_decoded_as_forms_are():
    assert query_params("sid=s&data=%7B%22a%22%3A+%22%C3%9C+%E2%9C%93%22%7D&x=&&y") == \
        {"sid": "s", "data": '{"a": "\u00dc \u2713"}', "x": "", "y": ""}
    assert query_params("id=100%25+sure&bad=%zz%4&esc=a%5Cx41\\") == {"id": "100% sure", "bad": "%zz%4", "esc": "a\\x41\\"}


# -- property test: no input crashes the call logic or makes an envelope outside its schema --
from hypothesis import given, settings, strategies as st  # noqa: E402

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=8)
_value = st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.booleans(), st.none(), _json,
                   st.sampled_from(["1429186474", "1767225600000", "-1", "1e20", "nan", "{a:'b'}", "{}", "[]",
                                    "9622E88BED0B5BC186286CB9504A02E5F3B4207DCA0AB23CA4FBDDFC15627E2F", "a-" + "x" * 23]))
_params = st.dictionaries(st.sampled_from(["ts", "id", "sign", "action", "data", "srcid", "destid", "destsign",
                                           "previous_id", "cart", "event_id", "sid", "other"]), _value, max_size=9)
_methods = st.sampled_from(["track", "set", "alias", "identify", "setCart", "cancelCart", "purchaseCart", "nope", ""])


@settings(max_examples=2000, deadline=None)
@given(method=_methods, params=_params, signed=st.booleans())
def test_no_input_crashes_the_collector_logic_or_breaks_the_raw_schema(method, params, signed):
    try:
        env = envelope(method_of(method, params) if method == "track" else method, params, SIGNED if signed else OPEN, NOW)
    except CallError as e:
        assert 400 <= e.status < 500 and e.reason
        return
    jsonschema.validate(env, SCHEMAS["tracktor.raw"])
    json.dumps(env, allow_nan=False)  # what goes to Kafka is plain JSON


@settings(max_examples=3000, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("%+\\=&abcXYZ019fF\u00e9\u00ff x"), max_size=30)
       | st.builds(urllib.parse.urlencode, st.dictionaries(st.text(max_size=6), st.text(max_size=20), max_size=4)))
def test_query_parameters_decode_as_the_standard_library_does(text):
    expected = {}
    for part in text.split("&"):
        if part:
            key, _, value = part.partition("=")
            expected[urllib.parse.unquote_plus(key)] = urllib.parse.unquote_plus(value)
    assert query_params(text) == expected
