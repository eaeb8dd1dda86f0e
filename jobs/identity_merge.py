"""identity_merge: tracktor.raw -> tracktor.events, tracktor.identities, tracktor.profiles.

Keyed by app: one app's identity graph lives on one subtask, so an alias that touches two
ids never spans subtasks. The rules are in udfs/identity.py; this file only wires Kafka,
state and the Python function together.

    python -m jobs.identity_merge [--config tracktor.yaml] [--bounded]
"""
from __future__ import annotations

import argparse
import json
import logging

from pyflink.common import Row, Types, WatermarkStrategy
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from tracktor import config as config_mod
from tracktor.flink import insert_into_kafka, kafka_source, output_type, stream_env
from tracktor.stack import resolve_bootstrap
from udfs.envelope import BadRecord, parse_raw
from udfs.identity import JOB, IdentityMerger


def app_of(text: str) -> str:
    """The key: the record's app, or '' for a record too broken to have one (it is rejected later)."""
    try:
        app = json.loads(text).get("app")
        return app if isinstance(app, str) else ""
    except Exception:
        return ""


class JsonMapState:
    """MapState of JSON strings seen as MapState of dicts."""

    def __init__(self, state):
        self.state = state

    def get(self, key):
        text = self.state.get(key)
        return None if text is None else json.loads(text)

    def put(self, key, value):
        self.state.put(key, json.dumps(value, separators=(",", ":")))

    def remove(self, key):
        self.state.remove(key)


class IdentityMergeFunction(KeyedProcessFunction):
    def __init__(self, topics: dict):
        self.topics = topics
        self.merger = None

    def open(self, ctx: RuntimeContext):
        ids = ctx.get_map_state(MapStateDescriptor("ids", Types.STRING(), Types.STRING()))
        groups = ctx.get_map_state(MapStateDescriptor("groups", Types.STRING(), Types.STRING()))
        version = ctx.get_state(ValueStateDescriptor("version", Types.LONG()))
        self.merger = IdentityMerger(ids, JsonMapState(groups), version, self.topics["raw"])

    def process_element(self, text, ctx):
        try:
            outputs = self.merger.process(parse_raw(text))
        except BadRecord as e:
            outputs = [("dead_letter", JOB, {"job": JOB, "topic": self.topics["raw"], "reason": str(e),
                                              "record": text[:10000], "failed_at": ctx.timestamp() or 0})]
        for role, key, record in outputs:
            yield Row(self.topics[role], key, json.dumps(record, separators=(",", ":")))


def build(env, t_env, bootstrap_servers: str, topics: dict, bounded: bool):
    """Wire the job; returns the TableResult's pipeline to execute."""
    source = kafka_source(bootstrap_servers, [topics["raw"]], "tracktor-identity-merge", bounded)
    raw = env.from_source(source, WatermarkStrategy.no_watermarks(), topics["raw"]).uid("raw-source")
    out = (raw.key_by(app_of, key_type=Types.STRING())
              .process(IdentityMergeFunction(topics), output_type=output_type())
              .uid("identity-merge").name("identity merge"))
    return insert_into_kafka(t_env, out, "identity_out", bootstrap_servers,
                             [topics[r] for r in ("events", "identities", "profiles", "dead_letter")],
                             "tracktor-identity-merge")


def run(cfg: config_mod.Config, bootstrap_servers: str, bounded: bool):
    env, t_env = stream_env(cfg.flink, "identity_merge", resume=not bounded)
    result = build(env, t_env, bootstrap_servers, cfg.topics, bounded)
    result.wait()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=None, help="YAML configuration (default: tracktor.yaml)")
    p.add_argument("--bounded", action="store_true", help="replay tracktor.raw from its beginning to its end as it is at start, then stop")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = config_mod.load(args.config)
    run(cfg, resolve_bootstrap(cfg), args.bounded)


if __name__ == "__main__":
    main()
