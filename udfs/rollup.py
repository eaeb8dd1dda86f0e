"""What metric_rollup writes: topic records -> warehouse rows, gathered into batches.

Rows carry ms timestamps as ints; the writer turns them into DateTime64 on insert.
"""
from __future__ import annotations

import json
import time

from udfs.envelope import BadRecord

# The topics metric_rollup reads, by their role in the config's kafka.topics.
ROLES = ("events", "derived", "identities", "profiles", "segments")


def _need(rec: dict, *keys):
    for k in keys:
        if k not in rec:
            raise BadRecord(f"missing {k!r}")


def json_text(value) -> str:
    """The one JSON text of a value the warehouse stores and the criteria compare against."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def to_rows(role: str, text: str) -> list[tuple[str, list]]:
    """(table, row) pairs for one record of the topic playing `role`: one row, except a
    setProperties call ("set" event), which gives a property_sets row per property."""
    try:
        rec = json.loads(text)
    except ValueError as e:
        raise BadRecord(f"not JSON: {e}") from None
    if not isinstance(rec, dict):
        raise BadRecord("not a JSON object")
    if role in ("events", "derived"):
        _need(rec, "app", "event_id", "kind", "event", "distinct_id", "person_id", "ts", "received_at")
        data = rec.get("data") or {}
        if not isinstance(data, dict):
            raise BadRecord("'data' is not a JSON object")
        if rec["kind"] == "set":
            return [("property_sets", [rec["app"], rec["distinct_id"], key, json_text(value), rec["ts"], rec["event_id"]])
                    for key, value in sorted(data.items())]
        return [("events", [rec["app"], rec["event_id"], rec["kind"], rec["event"], rec["distinct_id"],
                            rec["person_id"], rec["ts"], rec["received_at"], json_text(data)])]
    if role == "identities":
        _need(rec, "app", "distinct_id", "person_id", "version", "ts", "event_id")
        return [("identities", [rec["app"], rec["distinct_id"], rec["person_id"], rec["version"], rec["ts"],
                                rec["event_id"]])]
    if role == "segments":
        _need(rec, "app", "segment", "person_id", "change", "ts", "version")
        return [("segment_changes", [rec["app"], rec["segment"], rec["person_id"], rec["change"], rec["version"],
                                     rec["ts"]])]
    _need(rec, "app", "person_id", "properties", "version", "ts")
    return [("persons", [rec["app"], rec["person_id"], json_text(rec["properties"]), rec["version"], rec["ts"],
                         rec.get("merged_into")])]


class Batcher:
    """Rows per table, handed out when `max_rows` are waiting or the oldest waited `max_wait_s`."""

    def __init__(self, max_rows: int = 10_000, max_wait_s: float = 1.0, clock=time.monotonic):
        self.max_rows, self.max_wait_s, self.clock = max_rows, max_wait_s, clock
        self.rows: dict[str, list] = {}
        self.count = 0
        self.since: float | None = None

    def add(self, table: str, row: list) -> None:
        self.rows.setdefault(table, []).append(row)
        self.count += 1
        if self.since is None:
            self.since = self.clock()

    def due(self) -> bool:
        return self.count >= self.max_rows or (self.since is not None and self.clock() - self.since >= self.max_wait_s)

    def take(self) -> dict[str, list]:
        rows, self.rows, self.count, self.since = self.rows, {}, 0, None
        return rows
