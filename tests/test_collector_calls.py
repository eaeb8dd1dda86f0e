"""udfs.collector without HTTP: parameters, JavaScript-style data, signatures, envelopes."""
from __future__ import annotations

import dataclasses
import json

import jsonschema
import pytest

from tests.test_schemas import SCHEMAS
from tracktor.config import App
from udfs.collector import CallError, envelope, method_of, parse_data, signature, signature_ok

SECRET = "2D8CarQ4rX3WvH6TK7DpJDk5"
OPEN = App("open", "Open", SECRET, False, 1800, 1800, frozenset(), {}, {}, {})
SIGNED = App("signed", "Signed", SECRET, True, 1800, 1800, frozenset(), {}, {}, {})
NOW = 1_767_225_600_000


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
    ("track", {"ts": "1", "action": "x"}, 400, "missing parameter 'id'"),
    ("track", {"ts": "1", "id": "u"}, 400, "missing parameter 'action'"),
    ("track", {"ts": "1", "id": "u" * 257, "action": "x"}, 400, "longer than 256"),
    ("set", {"ts": "1", "id": "u"}, 400, "missing parameter 'data'"),
    ("set", {"ts": "1", "id": "u", "data": "[1]"}, 400, "'data' is not a JSON object"),
    ("alias", {"ts": "1", "srcid": "a"}, 400, "missing parameter 'destid'"),
    ("teleport", {"ts": "1", "id": "u"}, 400, "unknown method"),
])
def test_bad_calls_say_which_parameter(method, params, status, reason):
    with pytest.raises(CallError) as err:
        envelope(method, params, OPEN, NOW)
    assert err.value.status == status and reason in err.value.reason


def test_a_signed_only_app_refuses_unsigned_or_wrongly_signed_calls():
    good = signature(SECRET, "5115")
    assert envelope("track", {"ts": "1", "id": "5115", "action": "x", "sign": good.lower()}, SIGNED, NOW)
    for sign in (None, "00" * 32, signature(SECRET, "5116")):
        with pytest.raises(CallError) as err:
            envelope("track", {"ts": "1", "id": "5115", "action": "x", "sign": sign}, SIGNED, NOW)
        assert err.value.status == 403
    with pytest.raises(CallError, match="destsign"):
        envelope("alias", {"ts": "1", "srcid": "a-1", "destid": "5115", "sign": good}, SIGNED, NOW)
    assert envelope("alias", {"ts": "1", "srcid": "a-1", "destid": "5115", "destsign": good}, SIGNED, NOW)
    # an open app takes unsigned calls
    assert json.dumps(envelope("track", {"ts": "1", "id": "5115", "action": "x"}, OPEN, NOW))


def test_every_generated_envelope_round_trips_through_a_collector_call():
    from tracktor.envelopes import to_call
    from tracktor.sample_data import Generator
    apps = {"demo-video": dataclasses.replace(OPEN, sid="demo-video"), "demo-shop": dataclasses.replace(OPEN, sid="demo-shop")}
    for env in Generator(seed=4, people=100):
        call = to_call(env)
        got = envelope(call.pop("method"), call, apps[env["app"]], env["received_at"])
        assert {**got, "event_id": env["event_id"]} == env
