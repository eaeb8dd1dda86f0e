"""The Flink side of a per-person job (udfs/persons.py): keyed by bucket of `app:person`, so
one Python call handles a bundle of many persons and a single app's persons spread over
every subtask.

State per bucket: `persons` (app:person -> the person's entry, JSON) and `timers` (a second
-> the persons to wake then, JSON). A person's wake time is an event-time timer of its
bucket, coalesced to whole seconds; when the watermark passes it, the persons indexed there
whose wake time has come are woken. The end of an input (the largest watermark) is not a
time: nothing is woken by it (a bounded run of these jobs drains instead: runner.py).
"""
from __future__ import annotations

import orjson
from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor

from tracktor.flink.bundling import bundle_output_type, bundle_row, bundled, unbundled
from udfs.envelope import BadRecord, dead_letter, failure_reason
from udfs.outputs import Outputs
from udfs.persons import Router
from udfs.state import BufferedStore, JsonStore

END_OF_INPUT = 2 ** 63 - 1
SECOND = 1000


def wake_second(t: int) -> int:
    return -(-t // SECOND) * SECOND


class PersonFunction(KeyedProcessFunction):
    """Hands each record of a bundle to its person's Router, and wakes persons on time.
    `logic` is the job's udfs Logic; its inputs are events (tracktor.events, .derived) and
    the job's own handoffs."""

    def __init__(self, job: str, logic, topics: dict):
        self.job, self.logic, self.topics = job, logic, topics

    def open(self, ctx: RuntimeContext):
        self.persons = BufferedStore(JsonStore(ctx.get_map_state(
            MapStateDescriptor("persons", Types.STRING(), Types.STRING()))))
        self.timers = BufferedStore(JsonStore(ctx.get_map_state(
            MapStateDescriptor("timers", Types.LONG(), Types.STRING()))))
        self.router = Router(self.logic, self.job, self.topics)

    def process_element(self, bundle, ctx):
        out = Outputs()
        emit = self._emitter(out)
        for text, ts, role in zip(bundle.values, bundle.stamps, bundle.roles):
            try:
                record = orjson.loads(text)
                if not isinstance(record, dict):
                    raise BadRecord("not a JSON object")
                if "job" in record and record["job"] != self.job:
                    continue  # another job's handoff
                key = _person_of(record)
                self._step(key, ctx, lambda entry: self.router.on_record(key, entry, record, ts, emit))
            except Exception as e:  # noqa: BLE001 - one record must never stop the job
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
        keys = self.timers.get(timestamp) or []
        self.timers.remove(timestamp)
        for key in keys:
            entry = self.persons.get(key)
            wake = self.router.wake(entry) if entry else None
            if wake is not None and wake <= timestamp:
                self._step(key, ctx, lambda e: self.router.on_timer(key, e, timestamp, emit))
        self._flush()
        if out:
            yield bundle_row(out)

    # -- state ------------------------------------------------------------------------------
    def _step(self, key: str, ctx, step) -> None:
        entry = self.persons.get(key)
        before = self.router.wake(entry) if entry else None
        entry = step(entry)
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


def build_person_job(job, logic, inputs: dict, cfg):
    """The whole job graph of a per-person job: its inputs bundled by person bucket, one
    PersonFunction, the outputs split for the sink."""
    bundles = bundled(*(inputs[role] for role in job.inputs), max_records=cfg.flink.bundle_max_records,
                      max_delay_ms=cfg.flink.bundle_max_delay_ms, buckets=cfg.flink.person_buckets, roles=list(job.inputs))
    fn = PersonFunction(job.name, logic, cfg.topics)
    return unbundled(bundles.process(fn, output_type=bundle_output_type()).uid(job.uid("persons")).name(job.name))
