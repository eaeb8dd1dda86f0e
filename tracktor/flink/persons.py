"""The Flink side of a per-person job (udfs/persons.py): keyed by bucket of `app:person`, so
one Python call handles a bundle of many persons and a single app's persons spread over
every subtask.

State per bucket: `persons` (app:person -> the person's entry, JSON) and `timers` (a second
-> the persons to wake then, JSON). A person's wake time is an event-time timer of its
bucket, coalesced to whole seconds; when the watermark passes it, the persons indexed there
whose wake time has come are woken; a wake time whose second the watermark has passed
already when it is set is handled at once (`_step`). The end of an input (the largest
watermark) is not a time: nothing is woken by it (a bounded run of these jobs drains
instead: runner.py).
"""
from __future__ import annotations

import orjson
from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor

from tracktor.flink.bundling import bundle_output_type, bundle_row, bundled, unbundled
from tracktor.flink.environment import jvm
from udfs.envelope import BadRecord, dead_letter, failure_reason
from udfs.outputs import Outputs
from udfs.persons import Router, segment_change, wake_second
from udfs.state import BufferedStore, JsonStore

END_OF_INPUT = 2 ** 63 - 1

class PersonFunction(KeyedProcessFunction):
    """Hands each record of a bundle to its person's Router, and wakes persons on time.
    `logic` is the job's udfs Logic; its inputs are events (tracktor.events, .derived), segment
    changes (tracktor.segments, as events of kind `segment`) and the job's own handoffs."""

    def __init__(self, job: str, logic, topics: dict):
        self.job, self.logic, self.topics = job, logic, topics

    def open(self, ctx: RuntimeContext):
        self.persons = BufferedStore(JsonStore(ctx.get_map_state(
            MapStateDescriptor("persons", Types.STRING(), Types.STRING()))))
        self.timers = BufferedStore(JsonStore(ctx.get_map_state(
            MapStateDescriptor("timers", Types.LONG(), Types.STRING()))))
        self.router = Router(self.logic, self.job, self.topics)
        # definition changes (the control topic), per bucket as every bucket gets them all
        self.definitions = BufferedStore(JsonStore(ctx.get_map_state(
            MapStateDescriptor("definitions", Types.STRING(), Types.STRING()))))
        self.versions: dict[str, int] = {}  # the definitions this process has taken in
        self.loaded: set[str] = set()       # buckets whose definitions it has read

    def process_element(self, bundle, ctx):
        out = Outputs()
        emit = self._emitter(out)
        self._load_definitions(ctx.get_current_key())
        for text, ts, role in zip(bundle.values, bundle.stamps, bundle.roles):
            try:
                record = orjson.loads(text)
                if not isinstance(record, dict):
                    raise BadRecord("not a JSON object")
                if role == "control":
                    self._define(record, ts, ctx, emit)
                    continue
                if "job" in record and record["job"] != self.job:
                    continue  # another job's handoff
                if role == "segments":
                    record = segment_change(record)
                key = _person_of(record)
                self._step(key, ctx, emit, lambda entry: self.router.on_record(key, entry, record, ts, emit))
            except Exception as e:  # noqa: BLE001 - one record must never stop the job
                if role == "control" and ctx.get_current_key() != "0":
                    continue  # every bucket gets a definition: one of them tells what was wrong with it
                out.add(self.topics["dead_letter"], self.job, orjson.dumps(
                    dead_letter(self.job, self.topics[role], failure_reason(e), text, ts)).decode(), ts)
        self._flush()
        if out:
            yield bundle_row(out)

    def on_timer(self, timestamp: int, ctx):
        if ctx.timer_service().current_watermark() == END_OF_INPUT:
            return  # an input ended: that is no time
        out = Outputs()
        emit = self._emitter(out)
        self._load_definitions(ctx.get_current_key())  # a restored timer may fire before any record
        keys = self.timers.get(timestamp) or []
        self.timers.remove(timestamp)
        for key in keys:
            try:
                entry = self.persons.get(key)
                wake = self.router.wake(entry) if entry else None
                if wake is not None and wake <= timestamp:
                    self._step(key, ctx, emit, lambda e: self.router.on_timer(key, e, timestamp, emit))
            except Exception as e:  # noqa: BLE001 - one person's fault must never stop the job
                out.add(self.topics["dead_letter"], self.job, orjson.dumps(dead_letter(
                    self.job, "timer", failure_reason(e), f"{key} at {timestamp}", timestamp)).decode(), timestamp)
        self._flush()
        if out:
            yield bundle_row(out)

    # -- definitions --------------------------------------------------------------------------
    def _load_definitions(self, bucket: str) -> None:
        """After a start, the definition changes this bucket took in (every bucket has them all)."""
        if bucket in self.loaded:
            return
        self.loaded.add(bucket)
        for key in self.definitions.keys():
            known = self.definitions.get(key)
            if known["version"] > self.versions.get(key, -1):
                self.logic.adopt(key, known["definition"])
                self.versions[key] = known["version"]

    def _define(self, record: dict, ts: int, ctx, emit) -> None:
        """A definition added, changed or deleted: taken in (the job keeps the last good one
        when it is invalid), then every person of its app in this bucket evaluated again."""
        change = self.logic.change_of(record)
        if change is None:
            return  # another job's definition
        key, app = change
        known = self.definitions.get(key)
        if known is not None and known["version"] >= ts:
            return  # seen already (a replay of the control topic)
        if self.versions.get(key, -1) < ts:
            self.logic.adopt(key, record["definition"])  # ValueError: refused, the last good one stays
            self.versions[key] = ts
        self.definitions.put(key, {"definition": record["definition"], "version": ts})
        cause = {"reason": "definition", "segment": key.partition(":")[2]}
        for person in [k for k in self.persons.keys() if k.startswith(app + ":")]:
            self._step(person, ctx, emit, lambda entry: self.router.revisit(person, entry, ts, cause, emit))

    # -- state ------------------------------------------------------------------------------
    def _step(self, key: str, ctx, emit, step) -> None:
        entry = self.persons.get(key)
        before = self.router.wake(entry) if entry else None
        entry = step(entry)
        now = ctx.timer_service().current_watermark()
        if now != END_OF_INPUT:  # a wake time the clock passed already: state that came late (a handoff)
            entry = self.router.late_wakes(key, entry, now, emit)
        if entry is None:
            self.persons.remove(key)
            return
        self.persons.put(key, entry)
        after = self.router.wake(entry)
        if after is not None and after != before:
            second = wake_second(after)
            waiting = self.timers.get(second) or []
            if key not in waiting:
                self.timers.put(second, waiting + [key])
            ctx.timer_service().register_event_time_timer(second)

    def _flush(self) -> None:
        self.persons.flush()
        self.timers.flush()
        self.definitions.flush()

    def _emitter(self, out: Outputs):
        topics = self.topics

        def emit(role: str, key: str, record: dict, ts: int) -> None:
            out.add(topics[role], key, orjson.dumps(record).decode(), ts)
        return emit


def _person_of(record: dict) -> str:
    """The person a record is for: an event's person, a handoff's survivor."""
    app, person = record.get("app"), record.get("to") if "from" in record else record.get("person_id")
    if not isinstance(app, str) or not app or not isinstance(person, str) or not person:
        raise BadRecord("a record for a person needs 'app' and 'person_id' (a handoff: 'to')")
    return f"{app}:{person}"


def fanned_out(stream, buckets: int):
    """Each record once per person bucket (io.tracktor.flink.FanOut), keyed to reach it."""
    from pyflink.datastream.data_stream import DataStream
    j = stream._j_data_stream
    return DataStream(j.flatMap(jvm().io.tracktor.flink.FanOut(buckets), j.getType()).setParallelism(j.getParallelism()))


def build_person_job(job, logic, inputs: dict, cfg):
    """The whole job graph of a per-person job: its inputs bundled by person bucket, one
    PersonFunction, the outputs split for the sink."""
    streams = [fanned_out(inputs[role], cfg.flink.person_buckets) if role == "control" else inputs[role]
               for role in job.inputs]
    bundles = bundled(*streams, max_records=cfg.flink.bundle_max_records,
                      max_delay_ms=cfg.flink.bundle_max_delay_ms, buckets=cfg.flink.person_buckets, roles=list(job.inputs))
    fn = PersonFunction(job.name, logic, cfg.topics)
    return unbundled(bundles.process(fn, output_type=bundle_output_type()).uid(job.uid("persons")).name(job.name))
