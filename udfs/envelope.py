"""Parsing and checking `tracktor.raw` envelopes (schemas/tracktor.raw.schema.json), and
new event ids.

Hand-written rather than a JSON Schema validator per record: identity_merge reads every
record through here, and the checks below cost a fraction of a generic validator's.
tests/test_schemas.py keeps the two in step.
"""
from __future__ import annotations

import itertools
import os
import re
import time

import orjson

from udfs.limits import (MAX_ACTION_LENGTH, MAX_CALL_BYTES, MAX_DEAD_LETTER_RECORD, MAX_FUTURE_MS, MAX_ID_LENGTH,
                         check_json)

ANONYMOUS_PREFIX = "a-"
# What tio.js makes for a new visitor: the only ids a signed-only app merges without a signature.
STRICTLY_ANONYMOUS = re.compile(r"a-[0-9A-Za-z]{23}")
# cart_action -> the JavaScript method, which is also the name of the resolved event
CART_METHODS = {"set": "setCart", "cancel": "cancelCart", "purchase": "purchaseCart"}
CART_ACTIONS = tuple(CART_METHODS)
_APP = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_REQUIRED = {
    "track": ("id", "action"),
    "set": ("id", "data"),
    "identify": ("id",),
    "alias": ("srcid", "destid"),
    "cart": ("id", "cart_action", "data"),
    "delete": ("id",),  # `tracktor people delete`: never from the collector (no such call)
}
_ID_FIELDS = ("id", "previous_id", "srcid", "destid")


class _EventIds:
    """New event ids: 32 hex digits, a random 64-bit prefix drawn once per process (again in a
    forked child) and a counter. uuid4 read the system's random source for every call and
    cost a third of a collector's batched call."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.prefix, self.counter = os.urandom(8).hex(), itertools.count()

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


new_event_id = _EventIds()
os.register_at_fork(after_in_child=new_event_id.reset)


class BadRecord(ValueError):
    """A record a job cannot use; the message is the reason sent to the dead-letter topic."""


def failure_reason(error: Exception) -> str:
    """What a dead-letter record says went wrong: a BadRecord's own words, else the error's
    type and message (a record that trips over a bug must still leave the job running)."""
    return str(error) if isinstance(error, BadRecord) else f"{type(error).__name__}: {error}"


def dead_letter(job: str, topic: str, reason: str, record: str, failed_at: int | None = None) -> dict:
    """A tracktor.deadletter record; `failed_at` defaults to now (ms since the epoch)."""
    return {"job": job, "topic": topic, "reason": reason, "record": (record or "")[:MAX_DEAD_LETTER_RECORD],
            "failed_at": int(time.time() * 1000) if failed_at is None else failed_at}


def is_anonymous(distinct_id: str) -> bool:
    """Anonymous for the merge rules and the anonymous retention: any id starting `a-` (the
    seed's own examples include `a-x123124123`)."""
    return distinct_id.startswith(ANONYMOUS_PREFIX)


def is_strictly_anonymous(distinct_id: str) -> bool:
    """`a-` and 23 base62 characters, as tio.js makes them (secure mode's unsigned sources)."""
    return STRICTLY_ANONYMOUS.fullmatch(distinct_id) is not None


def _non_negative_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_raw(text: str | bytes) -> dict:
    """The envelope as a dict, or BadRecord saying what is wrong with it (the collector's
    limits hold here too, for records that reach the topic by other ways)."""
    if len(text) > MAX_CALL_BYTES:
        raise BadRecord(f"record is {len(text):,} bytes, over the limit of {MAX_CALL_BYTES:,} per call")
    try:
        env = orjson.loads(text)
    except (orjson.JSONDecodeError, TypeError) as e:
        raise BadRecord(f"not JSON: {e}") from None
    if not isinstance(env, dict):
        raise BadRecord("not a JSON object")
    kind = env.get("type")
    if kind not in _REQUIRED:
        raise BadRecord(f"type must be one of {', '.join(_REQUIRED)}, got {kind!r}")
    for key in ("event_id", "app"):
        if not isinstance(env.get(key), str) or not env[key]:
            raise BadRecord(f"{key} must be a non-empty string")
    if len(env["event_id"]) > 64:
        raise BadRecord("event_id is longer than 64 characters")
    if not _APP.match(env["app"]):
        raise BadRecord(f"app {env['app']!r} is not a valid sid")
    for key in ("ts", "received_at"):
        if not _non_negative_int(env.get(key)):
            raise BadRecord(f"{key} must be a non-negative integer (ms since the epoch)")
    for key in _REQUIRED[kind]:
        if key not in env:
            raise BadRecord(f"a {kind} record needs {key!r}")
    for key in _ID_FIELDS:
        if key in env:
            value = env[key]
            if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
                raise BadRecord(f"{key} must be a string of 1-{MAX_ID_LENGTH} characters")
    action = env.get("action")
    if "action" in env and (not isinstance(action, str) or not action or len(action) > MAX_ACTION_LENGTH):
        raise BadRecord(f"action must be a string of 1-{MAX_ACTION_LENGTH} characters")
    if env["ts"] > env["received_at"] + MAX_FUTURE_MS:
        raise BadRecord("ts is more than 1 hour past received_at")
    if "data" in env:
        if not isinstance(env["data"], dict):
            raise BadRecord("data must be a JSON object")
        try:
            check_json(env["data"])
        except ValueError as e:
            raise BadRecord(str(e)) from None
    if "unsigned_source" in env and env["unsigned_source"] is not True:
        raise BadRecord("unsigned_source, when present, must be true")
    if kind == "cart" and env["cart_action"] not in CART_ACTIONS:
        raise BadRecord(f"cart_action must be one of {', '.join(CART_ACTIONS)}")
    return env
