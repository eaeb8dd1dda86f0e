"""identity_merge: tracktor.raw -> tracktor.events, tracktor.identities, tracktor.profiles.

Keyed by app, and tracktor.raw is keyed by app too: one app's calls are read from one
partition and handled by one subtask in that partition's order, so the outputs are a
function of the topic's contents at any parallelism (docs/identity.md). The calls reach
Python in bundles and each bundle's outputs go back as one row. What happens to a bundle is
udfs/identity.py's AppBundles; this file gives it Flink's state.

    python -m jobs.identity_merge [--config tracktor.yaml] [--bounded]
"""
from __future__ import annotations

from pyflink.common import Time, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, StateTtlConfig, ValueStateDescriptor

from tracktor.flink.bundling import bundle_output_type, bundle_row, bundled, unbundled
from tracktor.flink.runner import Job, main
from udfs.identity import JOB as NAME, AppBundles


class IdentityMergeFunction(KeyedProcessFunction):
    def __init__(self, topics: dict, anonymous_retention_s: float):
        self.topics = topics
        self.anonymous_retention_s = anonymous_retention_s

    def open(self, ctx: RuntimeContext):
        anonymous = MapStateDescriptor("anonymous_groups", Types.STRING(), Types.STRING())
        anonymous.enable_time_to_live(
            StateTtlConfig.new_builder(Time.milliseconds(int(self.anonymous_retention_s * 1000)))
            .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
            .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
            .build())
        self.bundles = AppBundles(
            ids=ctx.get_map_state(MapStateDescriptor("ids", Types.STRING(), Types.STRING())),
            groups=ctx.get_map_state(MapStateDescriptor("groups", Types.STRING(), Types.STRING())),
            anonymous_groups=ctx.get_map_state(anonymous),
            version=ctx.get_state(ValueStateDescriptor("version", Types.LONG())),
            topics=self.topics)

    def process_element(self, bundle, ctx):
        out = self.bundles.process(ctx.get_current_key(), bundle.values, bundle.stamps)
        if out:
            yield bundle_row(out)


def build(inputs: dict, cfg):
    bundles = bundled(inputs["raw"], max_records=cfg.flink.bundle_max_records, max_delay_ms=cfg.flink.bundle_max_delay_ms)
    merged = (bundles.process(IdentityMergeFunction(cfg.topics, cfg.identity.anonymous_retention),
                              output_type=bundle_output_type())
              .uid(JOB.uid("merge")).name("identity merge"))
    return unbundled(merged)


JOB = Job(NAME, inputs=("raw",), outputs=("events", "identities", "profiles", "dead_letter"), build=build,
          clock_inputs=("raw",), clock_outputs=("events",),
          summary="tracking calls -> resolved events, identity changes and profiles")

if __name__ == "__main__":
    main(JOB)
