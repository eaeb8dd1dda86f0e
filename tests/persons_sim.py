"""A per-person job without Flink, for the udfs tests: what tracktor/flink/persons.py does
with a udfs.persons.Router — records in, timers fired in time order as the clock (the
watermark) passes them, handoffs delivered when the test says (they travel through Kafka)."""
from __future__ import annotations

import copy

from udfs.persons import Router, wake_second


class Sim:
    """`at_once`: a wake time the clock has passed already when a record is taken in is
    handled then (as tracktor/flink/persons.py `_step` does), not at the clock's next move."""

    def __init__(self, logic, job: str = "job", at_once: bool = False):
        self.router = Router(logic, job, {})
        self.at_once = at_once
        self.entries: dict[str, dict] = {}
        self.watermark = -2 ** 63
        self.outputs: list[tuple[str, str, dict, int]] = []
        self.in_flight: list[dict] = []  # handoffs written, not read back yet

    def out(self, role, key, record, ts):
        self.outputs.append((role, key, copy.deepcopy(record), ts))
        if role == "handoffs":
            self.in_flight.append(copy.deepcopy(record))

    def record(self, key: str, record: dict, ts: int) -> None:
        entry = self.router.on_record(key, self.entries.get(key), copy.deepcopy(record), ts, self.out)
        self._store(key, self.router.late_wakes(key, entry, self.watermark, self.out) if self.at_once else entry)

    def clock(self, watermark: int) -> None:
        """The watermark moves to `watermark`: every timer at or before it fires, in order.
        As in the job, a person woken is stepped on while their wake time is behind the
        clock and moves, and a wake time that did not move is not set again: the test fails
        there (that person would never be woken again)."""
        self.watermark = max(self.watermark, watermark)
        while True:
            due = [(wake_second(w), key) for key, e in self.entries.items()
                   if (w := self.router.wake(e)) is not None and wake_second(w) <= self.watermark]
            if not due:
                return
            t, key = min(due)
            before = self.router.wake(self.entries[key])
            entry = self.router.late_wakes(key, self.router.on_timer(key, self.entries[key], t, self.out),
                                           self.watermark, self.out)
            assert entry is None or self.router.wake(entry) != before, \
                f"{key}'s wake time did not move: the job would never wake them again"
            self._store(key, entry)

    def deliver(self, count: int | None = None) -> None:
        """The handoffs written so far (or the first `count` of them) are read back, in the
        order written (the job reads its own topic)."""
        for _ in range(len(self.in_flight) if count is None else min(count, len(self.in_flight))):
            rec = self.in_flight.pop(0)
            self.record(f"{rec['app']}:{rec['to']}", rec, rec["at"])

    def derived(self) -> list[tuple]:
        return [(r["event"], r["person_id"], r["ts"], r["event_id"]) for role, _, r, _ in self.outputs if role == "derived"]

    def _store(self, key, entry):
        if entry is None:
            self.entries.pop(key, None)
        else:
            self.entries[key] = entry
