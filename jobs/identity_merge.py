"""identity_merge: tracktor.raw -> tracktor.events, tracktor.identities, tracktor.profiles.

Keyed by app, and tracktor.raw is keyed by app too: one app's calls are read from one
partition and handled by one subtask in that partition's order, so the outputs are a
function of the topic's contents at any parallelism (docs/identity.md). The calls reach
Python in bundles (flink.bundle_max_records, flink.bundle_max_delay_ms) and each bundle's
outputs go back as one row. The rules are in udfs/identity.py; this file wires Kafka,
state and the Python function together.

    python -m jobs.identity_merge [--config tracktor.yaml] [--bounded]
"""
from __future__ import annotations

import orjson
from pyflink.common import Row, Time, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, StateTtlConfig, ValueStateDescriptor

from tracktor import config as config_mod
from tracktor.flink.environment import (bundle_output_type, bundled_by_record_key, insert_into_kafka, kafka_rows, stream_env,
                            unbundled)
from tracktor.cli import job_main
from udfs.envelope import BadRecord, dead_letter, is_anonymous, parse_raw
from udfs.identity import JOB, IdentityMerger
from udfs.state import BufferedCell, BufferedStore, CachedStore, SplitStore

OUTPUT_ROLES = ("events", "identities", "profiles", "dead_letter")


class JsonMapState:
    """MapState of JSON strings seen as MapState of dicts."""

    def __init__(self, state):
        self.state = state

    def get(self, key, default=None):
        text = self.state.get(key)
        return default if text is None else orjson.loads(text)

    def put(self, key, value):
        self.state.put(key, orjson.dumps(value).decode())

    def remove(self, key):
        self.state.remove(key)


class IdentityMergeFunction(KeyedProcessFunction):
    def __init__(self, topics: dict, anonymous_retention_s: float):
        self.topics = topics
        self.anonymous_retention_s = anonymous_retention_s

    def open(self, ctx: RuntimeContext):
        ids = ctx.get_map_state(MapStateDescriptor("ids", Types.STRING(), Types.STRING()))
        groups = ctx.get_map_state(MapStateDescriptor("groups", Types.STRING(), Types.STRING()))
        anonymous = MapStateDescriptor("anonymous_groups", Types.STRING(), Types.STRING())
        anonymous.enable_time_to_live(
            StateTtlConfig.new_builder(Time.milliseconds(int(self.anonymous_retention_s * 1000)))
            .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
            .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
            .build())
        # Changes reach Flink's state once per bundle (flushed at its end, while its app is
        # still the current key), not once per call.
        self.ids = BufferedStore(ids)
        self.groups = BufferedStore(SplitStore(JsonMapState(groups), JsonMapState(ctx.get_map_state(anonymous)),
                                               is_anonymous))
        self.version = BufferedCell(ctx.get_state(ValueStateDescriptor("version", Types.LONG())))
        self.mergers: dict[str, IdentityMerger] = {}

    def merger_for(self, app: str) -> IdentityMerger:
        """One merger per app, each with its own cache of the app's id redirects (keyed state
        is scoped to the current key, the app, so each cache only ever sees its own app)."""
        merger = self.mergers.get(app)
        if merger is None:
            merger = self.mergers[app] = IdentityMerger(CachedStore(self.ids), self.groups, self.version,
                                                        self.topics["raw"])
        return merger

    def process_element(self, texts, ctx):
        """One bundle of an app's raw records, in topic order -> one Row of all their outputs."""
        app = ctx.get_current_key()
        merger, topics = self.merger_for(app), self.topics
        out_topics, out_keys, out_values = [], [], []
        for text in texts:
            try:
                env = parse_raw(text)
                if env["app"] != app:
                    raise BadRecord(f"record keyed {app!r} is for app {env['app']!r}: raw records are keyed by app")
                outputs = merger.process(env)
            except BadRecord as e:
                outputs = [("dead_letter", JOB, dead_letter(JOB, topics["raw"], str(e), text))]
            for role, key, record in outputs:
                out_topics.append(topics[role])
                out_keys.append(key)
                out_values.append(orjson.dumps(record).decode())
        for buffered in (self.ids, self.groups, self.version):
            buffered.flush()
        if out_values:
            yield Row(out_topics, out_keys, out_values)


def build(env, t_env, bootstrap_servers: str, topics: dict, bounded: bool, flink_cfg: dict,
          anonymous_retention_s: float = 90 * 86400):
    """Wire the job; returns the TableResult of its Kafka insert."""
    raw = kafka_rows(t_env, "raw_in", bootstrap_servers, topics["raw"], "tracktor-identity-merge", bounded)
    bundles = bundled_by_record_key(raw, flink_cfg["bundle_max_records"], flink_cfg["bundle_max_delay_ms"])
    out = (bundles.process(IdentityMergeFunction(topics, anonymous_retention_s), output_type=bundle_output_type())
                  .uid("identity-merge").name("identity merge"))
    return insert_into_kafka(t_env, unbundled(out), "identity_out", bootstrap_servers,
                             [topics[r] for r in OUTPUT_ROLES], "tracktor-identity-merge")


def run(cfg: config_mod.Config, bootstrap_servers: str, bounded: bool):
    env, t_env = stream_env(cfg.flink, "identity_merge", resume=not bounded)
    build(env, t_env, bootstrap_servers, cfg.topics, bounded, cfg.flink,
          cfg.identity["anonymous_retention_seconds"]).wait()


def main(argv=None):
    job_main(__doc__, run, argv)


if __name__ == "__main__":
    main()
