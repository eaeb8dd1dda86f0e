"""The JVM bundling in front of Python functions (tracktor.flink.bundling.bundled,
io.tracktor.flink.RecordBundler): every record once, in order per key, bundles no bigger
than asked, and nothing waits longer than the delay for a bundle to fill."""
from __future__ import annotations

import json
import time

import pytest
from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction

from tests.conftest import make_config
from tracktor.flink.bundling import bundled
from tracktor.flink.environment import one_java_thread, stream_env
from tracktor.flink.kafka import source, source_type
from tracktor.topics import ensure_topics

pytestmark = pytest.mark.integration

SEEN = Types.ROW_NAMED(["k", "values"], [Types.STRING(), Types.STRING()])


class ShowBundle(KeyedProcessFunction):
    """Each bundle as (key, JSON list of its values)."""

    def process_element(self, bundle, ctx):
        yield Row(ctx.get_current_key(), json.dumps(list(bundle.values)))


def test_bundles_keep_every_record_once_in_order_and_hold_at_most_max_records(tmp_path):
    cfg = make_config(tmp_path, "bundling", parallelism=2)
    records = [Row(f"app-{i % 3}", f"v{i}", i) for i in range(200)]
    with one_java_thread():
        env, _ = stream_env(cfg.flink, "bundling-bounded")
        rows = env.from_collection(records, type_info=source_type())
        shown = bundled(rows, max_records=7, max_delay_ms=60_000).process(ShowBundle(), output_type=SEEN)
    with shown.execute_and_collect() as results:
        seen = [(k, json.loads(values)) for k, values in results]

    assert all(1 <= len(values) <= 7 for _, values in seen)
    assert max(len(values) for _, values in seen) == 7
    for key in ("app-0", "app-1", "app-2"):
        got = [v for k, values in seen if k == key for v in values]
        assert got == [r[1] for r in records if r[0] == key]  # all, once, in order (the rest at the end)


class ShowTagged(KeyedProcessFunction):
    """Each bundle as (key, JSON list of [role, value])."""

    def process_element(self, bundle, ctx):
        yield Row(ctx.get_current_key(), json.dumps([[r, v] for r, v in zip(bundle.roles, bundle.values)]))


def test_inputs_bundled_together_share_bundles_and_keep_their_roles_and_order(tmp_path):
    # metric_rollup's shape: one key for every input, so a bundle (one insert per table) holds them all
    cfg = make_config(tmp_path, "bundling-together", parallelism=1)
    inputs = {role: [Row("writer", f"{role}-{i}", i) for i in range(50)] for role in ("events", "profiles", "segments")}
    with one_java_thread():
        env, _ = stream_env(cfg.flink, "bundling-together")
        streams = [env.from_collection(rows, type_info=source_type()) for rows in inputs.values()]
        shown = (bundled(*streams, max_records=1000, max_delay_ms=60_000, roles=list(inputs), together=True)
                 .process(ShowTagged(), output_type=SEEN))
    with shown.execute_and_collect() as results:
        seen = [json.loads(tagged) for _, tagged in results]

    assert any(len({role for role, _ in bundle}) == len(inputs) for bundle in seen)  # apart, no bundle would
    for role, rows in inputs.items():
        assert [v for bundle in seen for r, v in bundle if r == role] == [row[1] for row in rows]  # once, in order


class AppendBundle(KeyedProcessFunction):
    """Each bundle's values appended to a file as they arrive (a collecting sink would only
    show them after a checkpoint, and this test runs none)."""

    def __init__(self, path: str):
        self.path = path

    def process_element(self, bundle, ctx):
        with open(self.path, "a") as f:
            f.writelines(f"{v}\n" for v in bundle.values)
        yield from ()


def test_a_bundle_that_does_not_fill_goes_on_after_the_delay_with_no_checkpoint(kafka, tmp_path):
    # Checkpoints a day apart (Flink starts the first at a random moment within the interval,
    # so a short interval could flush the bundle first): only the bundler's timer sends it on.
    cfg = make_config(tmp_path, "bundling-timer", checkpoint_interval_ms=86_400_000)
    ensure_topics(kafka, cfg.kafka, [cfg.topics["raw"]], partitions=1)
    from kafka import KafkaProducer
    with KafkaProducer(bootstrap_servers=kafka) as producer:
        for i in range(5):
            producer.send(cfg.topics["raw"], key=b"app", value=f"v{i}".encode())
    out = tmp_path / "seen.txt"
    with one_java_thread():
        env, t_env = stream_env(cfg.flink, "bundling-unbounded")
        rows = source(t_env, "raw_in", kafka, cfg.topics["raw"], "bundling-timer", False, cfg.flink, clock=None)
        bundled(rows, max_records=1000, max_delay_ms=200).process(AppendBundle(str(out))).print()
    job = env.execute_async("bundling-unbounded")
    try:
        deadline = time.monotonic() + 45  # start-up takes ~10 s here
        while time.monotonic() < deadline and len(out.read_text().split() if out.exists() else []) < 5:
            time.sleep(0.2)
        assert out.exists() and out.read_text().split() == [f"v{i}" for i in range(5)]
    finally:
        job.cancel().result()
