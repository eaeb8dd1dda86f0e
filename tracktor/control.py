"""Changes while the jobs run: segment definitions on tracktor.control (schema there), and
deleting a person, a delete call on tracktor.raw.

A segment's definition is checked here first (udfs/segment_rules.py), so a wrong one is
refused with the reason before it reaches the job; segment_eval checks it again and keeps
the last good one should anything else write the topic.
"""
from __future__ import annotations

import orjson

from tracktor.config import Config
from udfs.limits import MAX_ID_LENGTH
from udfs.segment_rules import parse_segment

MAX_NAME_LENGTH = 256  # a segment's name (schemas/tracktor.control.schema.json)
MAX_CHANGES = 100      # segment changes in one call


def _producer(cfg: Config):
    """An idempotent producer to the configured Kafka (RuntimeError when it is not there)."""
    from confluent_kafka import Producer

    from tracktor.dev.stack import resolve_bootstrap
    return Producer({"bootstrap.servers": resolve_bootstrap(cfg), "acks": "all", "enable.idempotence": True})


def _known_app(cfg: Config, app: str) -> None:
    if app not in cfg.apps:
        raise ValueError(f"no app {app!r} (known: {', '.join(cfg.apps)})")


def publish_segments(cfg: Config, app: str, segments: dict[str, dict | None]) -> list[str]:
    """Add, replace or (None) delete segments of `app`; returns their names once Kafka has
    them. ValueError for a wrong change (before anything is written), RuntimeError when
    Kafka does not take it."""
    _known_app(cfg, app)
    if not isinstance(segments, dict) or not segments:
        raise ValueError("expected a mapping of segment names to definitions")
    if len(segments) > MAX_CHANGES:
        raise ValueError(f"at most {MAX_CHANGES} segment changes at once, got {len(segments)}")
    records = []
    for name, definition in segments.items():
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
            raise ValueError(f"a segment name is 1-{MAX_NAME_LENGTH} characters, got {str(name)[:80]!r}")
        if definition is not None:
            parse_segment(name, definition)  # ValueError naming the segment and the condition
        record = {"kind": "segment", "app": app, "name": name, "definition": definition}
        records.append((f"{app}:{name}".encode(), orjson.dumps(record)))  # all of them, before any is sent
    producer = _producer(cfg)
    failures = []
    for key, value in records:
        producer.produce(cfg.topics["control"], value, key, on_delivery=lambda err, _m: err and failures.append(str(err)))
    if producer.flush(30) or failures:
        raise RuntimeError(f"Kafka did not take the segment changes: {failures or 'timed out'}")
    return list(segments)


def delete_person(cfg: Config, app: str, distinct_id: str) -> None:
    """Put a delete call for the person `distinct_id` belongs to on tracktor.raw, in order
    with the app's other calls: identity_merge forgets them and all their ids, the per-person
    jobs let them leave, and metric_rollup removes their rows (docs/privacy.md)."""
    import time

    from tracktor.dev import envelopes

    _known_app(cfg, app)
    if not isinstance(distinct_id, str) or not distinct_id or len(distinct_id) > MAX_ID_LENGTH:
        raise ValueError(f"an id is 1-{MAX_ID_LENGTH} characters")
    now = int(time.time() * 1000)
    env = envelopes.delete(app, distinct_id, now)
    producer = _producer(cfg)
    failures = []
    producer.produce(cfg.topics["raw"], orjson.dumps(env), envelopes.kafka_key(env).encode(), timestamp=now,
                     on_delivery=lambda err, _m: err and failures.append(str(err)))
    if producer.flush(30) or failures:
        raise RuntimeError(f"Kafka did not take the deletion: {failures or 'timed out'}")
