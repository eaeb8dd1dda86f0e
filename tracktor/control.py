"""Changes while the jobs run: segment and campaign definitions on tracktor.control (schema
there), and deleting a person, a delete call on tracktor.raw.

A definition is checked here first (udfs/segment_rules.py, udfs/campaigns.py), so a wrong
one is refused with the reason before it reaches the job; segment_eval and workflow_runner
check it again and keep the last good one should anything else write the topic.
"""
from __future__ import annotations

import orjson

from tracktor.config import Config
from udfs.limits import MAX_ID_LENGTH
from udfs.campaigns import branch_keys, check_no_loops, parse_campaign
from udfs.segment_rules import parse_segment

MAX_NAME_LENGTH = 256  # a segment's or campaign's name (schemas/tracktor.control.schema.json)
MAX_CHANGES = 100      # definition changes in one call


def producer_for(cfg: Config):
    """An idempotent producer to the configured Kafka (RuntimeError when it is not there)."""
    from confluent_kafka import Producer

    from tracktor.dev.stack import resolve_bootstrap
    return Producer({"bootstrap.servers": resolve_bootstrap(cfg), "acks": "all", "enable.idempotence": True})


def known_app(cfg: Config, app: str) -> None:
    if app not in cfg.apps:
        raise ValueError(f"no app {app!r} (known: {', '.join(cfg.apps)})")


def _parser(kind: str):
    return {"segment": parse_segment, "campaign": parse_campaign}[kind]


def publish(cfg: Config, app: str, kind: str, changes: dict[str, dict | None]) -> list[str]:
    """Add, replace or (None) delete segments or campaigns (`kind`) of `app`; returns their
    names once Kafka has them. ValueError for a wrong change (before anything is written),
    RuntimeError when Kafka does not take it."""
    known_app(cfg, app)
    if not isinstance(changes, dict) or not changes:
        raise ValueError(f"expected a mapping of {kind} names to definitions")
    if len(changes) > MAX_CHANGES:
        raise ValueError(f"at most {MAX_CHANGES} {kind} changes at once, got {len(changes)}")
    records = []
    for name, definition in changes.items():
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
            raise ValueError(f"a {kind} name is 1-{MAX_NAME_LENGTH} characters, got {str(name)[:80]!r}")
        if definition is not None:
            _parser(kind)(name, definition)  # ValueError naming the definition and the part at fault
            if kind == "campaign":
                definition = branch_keys(definition)  # YAML's bare yes: / no: keys, as the branches they name
        record = {"kind": kind, "app": app, "name": name, "definition": definition}
        records.append((f"{app}:{name}".encode(), orjson.dumps(record)))  # all of them, before any is sent
    if kind == "campaign":  # with the configured ones (workflow_runner checks again against what it runs)
        check_no_loops({n: parse_campaign(n, d) for n, d in {**cfg.apps[app].campaigns, **changes}.items()
                        if d is not None})
    producer = producer_for(cfg)
    failures = []
    for key, value in records:
        producer.produce(cfg.topics["control"], value, key, on_delivery=lambda err, _m: err and failures.append(str(err)))
    if producer.flush(30) or failures:
        raise RuntimeError(f"Kafka did not take the {kind} changes: {failures or 'timed out'}")
    return list(changes)


def delete_person(cfg: Config, app: str, distinct_id: str) -> None:
    """Put a delete call for the person `distinct_id` belongs to on tracktor.raw, in order
    with the app's other calls: identity_merge forgets them and all their ids, the per-person
    jobs let them leave, and metric_rollup removes their rows (docs/privacy.md)."""
    import time

    from tracktor.dev import envelopes

    known_app(cfg, app)
    if not isinstance(distinct_id, str) or not distinct_id or len(distinct_id) > MAX_ID_LENGTH:
        raise ValueError(f"an id is 1-{MAX_ID_LENGTH} characters")
    now = int(time.time() * 1000)
    env = envelopes.delete(app, distinct_id, now)
    producer = producer_for(cfg)
    failures = []
    producer.produce(cfg.topics["raw"], orjson.dumps(env), envelopes.kafka_key(env).encode(), timestamp=now,
                     on_delivery=lambda err, _m: err and failures.append(str(err)))
    if producer.flush(30) or failures:
        raise RuntimeError(f"Kafka did not take the deletion: {failures or 'timed out'}")
