"""The topic schemas: one per topic, and parse_raw in step with tracktor.raw's schema."""
from __future__ import annotations

import copy
import json

import jsonschema
import pytest
from hypothesis import given, settings, strategies as st

from tracktor import ROOT, config
from tracktor.dev.sample_data import Generator
from udfs.envelope import BadRecord, parse_raw

SCHEMAS = {p.name.removesuffix(".schema.json"): json.loads(p.read_text()) for p in (ROOT / "schemas").glob("*.schema.json")}


def validator(topic: str):
    return jsonschema.Draft202012Validator(SCHEMAS[topic])


def test_every_configured_topic_has_a_schema_and_every_schema_a_topic():
    topics = set(config.load().topics.values())
    assert topics == set(SCHEMAS)
    for schema in SCHEMAS.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_generated_envelopes_are_valid_raw_records():
    v = validator("tracktor.raw")
    for env in Generator(seed=3, people=200):
        v.validate(env)
        assert parse_raw(json.dumps(env)) == env


def _accepts(text: str) -> bool:
    try:
        parse_raw(text)
        return True
    except BadRecord:
        return False


MUTATIONS = [
    lambda e: e.pop("event_id"), lambda e: e.update(app=""), lambda e: e.update(app="a b"),
    lambda e: e.update(type="delete"), lambda e: e.update(ts=-1), lambda e: e.update(ts="123"),
    lambda e: e.update(ts=True), lambda e: e.pop("received_at"), lambda e: e.update(data=[1]),
    lambda e: e.update(id=""), lambda e: e.update(id="x" * 257), lambda e: e.update(id=5),
    lambda e: e.pop("id", None), lambda e: e.pop("action", None), lambda e: e.pop("srcid", None),
    lambda e: e.update(cart_action="steal") if e["type"] == "cart" else e.update(type="cart"),
    lambda e: e.update(action=""), lambda e: e.update(event_id="e" * 65),
]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 400), st.sampled_from(range(len(MUTATIONS))))
def test_parse_raw_accepts_exactly_what_the_schema_accepts(index, mutation):
    envs = list(Generator(seed=5, people=40))
    env = copy.deepcopy(envs[index % len(envs)])
    MUTATIONS[mutation](env)
    schema_ok = validator("tracktor.raw").is_valid(env)
    assert _accepts(json.dumps(env)) == schema_ok


@pytest.mark.parametrize("text, reason", [
    ("{not json", "not JSON"), ("[1, 2]", "not a JSON object"), ('{"type": "track"}', "event_id"),
])
def test_unusable_records_say_why(text, reason):
    with pytest.raises(BadRecord, match=reason):
        parse_raw(text)
