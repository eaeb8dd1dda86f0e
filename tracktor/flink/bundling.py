"""Records to Python in bundles, and a bundle's outputs back as records.

PyFlink's cost per call of a Python function is most of a light function's cost, so the JVM
gathers records into bundles first (io.tracktor.flink.RecordBundler: up to `max_records`
per key, none waiting longer than `max_delay_ms`, none held over a checkpoint, watermarks
held back until the records before them are sent). The keying is done in the JVM too:
PyFlink's keyed operators take (key, element) rows and key them by their first field with
Flink's KeyByKeySelector, and a bundle has that shape (DataStream.key_by would run a Python
operator of its own before the shuffle).
"""
from __future__ import annotations

import gc
from contextlib import contextmanager

from tracktor.flink.environment import jvm
from tracktor.flink.kafka import OUTPUT_FIELDS, _java_strings, output_type


def bundle_type(tagged: bool = False):
    """A bundle's element, as the keyed function sees it: Row(values: [str], stamps: [int]),
    and with `tagged` also roles: [str] (the input each record came from)."""
    from pyflink.common import Types
    names, types = ["values", "stamps"], [Types.BASIC_ARRAY(Types.STRING()), Types.BASIC_ARRAY(Types.LONG())]
    if tagged:
        names.append("roles")
        types.append(Types.BASIC_ARRAY(Types.STRING()))
    return Types.ROW_NAMED(names, types)


def bundled(*streams, max_records: int, max_delay_ms: int, buckets: int = 0, roles: list[str] | None = None,
            together: bool = False):
    """Source rows Row(k, v, ts) in bundles, as a KeyedStream whose current key is the record
    key k — or with `buckets`, k's bucket (a per-person job handles many persons per call and
    keeps each one's state under its own key inside the bucket's state). A key `#bucket:N`
    addresses bucket N itself. Several streams are bundled each at its own parallelism (so
    each subtask bundles what one source subtask read, in order) and keyed together; with
    `roles` (one per stream) each record keeps the role of the input it came from. With
    `together` the streams are united before one bundler (at the first stream's
    parallelism), so a bundle holds records of every input under its key: one call of the
    function, not one per input, per `max_delay_ms`."""
    from pyflink.common import Types
    from pyflink.datastream.data_stream import DataStream, KeyedStream

    element = bundle_type(tagged=roles is not None)
    bundle = Types.ROW([Types.STRING(), element]).get_java_type_info()
    kinds = _java_strings(["string", "long"] + (["string"] if roles is not None else []))
    inputs = []
    for i, stream in enumerate(streams):
        j = stream._j_data_stream
        if roles is not None:
            tagged = Types.ROW([Types.STRING(), Types.STRING(), Types.LONG(), Types.STRING()]).get_java_type_info()
            j = j.map(jvm().io.tracktor.flink.Tag(roles[i]), tagged).setParallelism(j.getParallelism())
        inputs.append(DataStream(j))
    if together and len(inputs) > 1:
        inputs = [inputs[0].union(*inputs[1:])]
    parts = []
    for stream in inputs:  # (a union has its first input's parallelism)
        j = stream._j_data_stream
        parts.append(DataStream(j.transform("bundle", bundle, jvm().io.tracktor.flink.RecordBundler(
            max_records, max_delay_ms, buckets, kinds)).setParallelism(j.getParallelism())))
    bundles = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    keyed = bundles._j_data_stream.keyBy(jvm().KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info())
    return KeyedStream(keyed, element, bundles)


def bundle_output_type():
    """What a bundled function yields: Row([topic, ...], [key, ...], [value, ...], [ts, ...])."""
    from pyflink.common import Types
    strings = Types.BASIC_ARRAY(Types.STRING())
    return Types.ROW_NAMED(OUTPUT_FIELDS, [strings, strings, strings, Types.BASIC_ARRAY(Types.LONG())])


def unbundled(bundles):
    """A stream of `bundle_output_type` rows as Row(topic, k, v, ts), split in the JVM."""
    from pyflink.datastream.data_stream import DataStream

    j = bundles._j_data_stream
    return DataStream(j.flatMap(jvm().io.tracktor.flink.Unbundle(), output_type().get_java_type_info())
                      .setParallelism(j.getParallelism()))


def bundle_row(out):
    """An Outputs (udfs/outputs.py) as the one bundle_output_type row a function yields."""
    from pyflink.common import Row
    return Row(out.topics, out.keys, out.values, out.stamps)


@contextmanager
def collector_paused():
    """Python's cyclic garbage collector off while one bundle is handled. A bundle's per-record
    objects (parsed records, rows) hold no cycles, so reference counting frees them; but their
    allocations trigger collections that walk every live object of the worker. In
    metric_rollup's writer that walk was about half the cost per record (docs/performance.md).
    The collector runs as usual between bundles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()

