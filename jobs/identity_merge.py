"""identity_merge: tracktor.raw -> tracktor.events, tracktor.identities, tracktor.profiles.

Keyed by app, and tracktor.raw is keyed by app too: one app's calls are read from one
partition and handled by one subtask in that partition's order, so the outputs are a
function of the topic's contents at any parallelism (docs/identity.md). The calls reach
Python in bundles and each bundle's outputs go back as one row. The rules are in
udfs/identity.py; this file wires state and the Python function together.

    python -m jobs.identity_merge [--config tracktor.yaml] [--bounded]
"""
from __future__ import annotations

import orjson
from pyflink.common import Time, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, StateTtlConfig, ValueStateDescriptor

from tracktor.flink.bundling import Outputs, bundle_output_type, bundled, unbundled
from tracktor.flink.runner import Job, main
from udfs.envelope import dead_letter, failure_reason, is_anonymous, parse_raw
from udfs.identity import JOB as NAME, IdentityMerger, is_anonymous_group
from udfs.state import BufferedCell, BufferedStore, CachedStore, JsonStore, SplitStore


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
        self.groups = BufferedStore(SplitStore(JsonStore(groups), JsonStore(ctx.get_map_state(anonymous)),
                                               is_anonymous_group, is_anonymous))
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

    def process_element(self, bundle, ctx):
        """One bundle of an app's raw records, in topic order -> one row of all their outputs.
        A record that fails for any reason goes to the dead-letter topic; the rest go on."""
        app = ctx.get_current_key()
        merger, topics = self.merger_for(app), self.topics
        out = Outputs()
        for text, ts in zip(bundle.values, bundle.stamps):
            try:
                env = parse_raw(text)
                if env["app"] != app:
                    raise ValueError(f"record keyed {app!r} is for app {env['app']!r}: raw records are keyed by app")
                outputs = [(topics[role], key, orjson.dumps(record).decode()) for role, key, record in merger.process(env)]
            except Exception as e:  # noqa: BLE001 - one record must never stop the job
                outputs = [(topics["dead_letter"], NAME,
                            orjson.dumps(dead_letter(NAME, topics["raw"], failure_reason(e), text, ts)).decode())]
            for topic, key, value in outputs:
                out.add(topic, key, value, ts)
        for buffered in (self.ids, self.groups, self.version):
            buffered.flush()
        if out:
            yield out.row()


def build(inputs: dict, cfg):
    bundles = bundled(inputs["raw"], cfg.flink.bundle_max_records, cfg.flink.bundle_max_delay_ms)
    merged = (bundles.process(IdentityMergeFunction(cfg.topics, cfg.identity.anonymous_retention),
                              output_type=bundle_output_type())
              .uid(JOB.uid("merge")).name("identity merge"))
    return unbundled(merged)


JOB = Job(NAME, inputs=("raw",), outputs=("events", "identities", "profiles", "dead_letter"), build=build,
          clock_inputs=("raw",), clock_outputs=("events",),
          summary="tracking calls -> resolved events, identity changes and profiles")

if __name__ == "__main__":
    main(JOB)
