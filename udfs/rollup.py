"""What metric_rollup writes: topic records -> warehouse rows.

TABLES is the one declaration of each table's columns in insert order (the migrations
create them; tests/test_drift.py checks the two agree, and that every column comes from a
field the topic's schema carries). Rows carry ms timestamps as ints; the writer turns them
into DateTime64 on insert.
"""
from __future__ import annotations

import hashlib

import orjson

from udfs.envelope import BadRecord

# The topics metric_rollup reads, by their role in the config's kafka.topics.
ROLES = ("events", "derived", "identities", "profiles", "segments")

TABLES = {
    "events": ("app", "event_id", "kind", "event", "distinct_id", "person_id", "ts", "received_at", "data"),
    "property_sets": ("app", "distinct_id", "key", "value", "ts", "event_id"),
    "identities": ("app", "distinct_id", "person_id", "version", "ts", "event_id"),
    "persons": ("app", "person_id", "properties", "version", "ts", "merged_into"),
    "segment_changes": ("app", "segment", "person_id", "change", "version", "ts"),
    "deleted_ids": ("app", "id_hash", "ts"),  # a deleted person's ids, by hash (Deletions)
}
TIMESTAMP_COLUMNS = {"ts", "received_at"}
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01: inside ClickHouse's DateTime64 range
# What each column takes: a record with anything else is refused here, so that one bad
# record can never fail the insert of a whole bundle.
NUMBER_COLUMNS = {"ts", "received_at", "version"}
# The table each topic role fills, and the record fields a row needs (merged_into may be
# absent). A setProperties call ("set" event) fills property_sets instead, a row per key.
ROLE_TABLE = {"events": "events", "derived": "events", "identities": "identities", "profiles": "persons",
              "segments": "segment_changes"}
OPTIONAL_FIELDS = {"merged_into"}
JSON_COLUMNS = {"data", "properties"}
_NUMBER_MAX = {c: MAX_TS_MS if c != "version" else 2 ** 63 for c in NUMBER_COLUMNS}
_COLUMN_KIND = {c: int if c in NUMBER_COLUMNS else dict if c in JSON_COLUMNS else str  # what _row takes fast
                for cs in TABLES.values() for c in cs}
# Events that only carry a merge or deletion to the per-person jobs: nothing to count.
NOTICE_KINDS = {"merge", "delete"}
DELETE_KIND = "delete"
PERSON_COLUMNS = ("distinct_id", "person_id")  # what names a person in a row


def json_text(value) -> str:
    """The one JSON text of a value the warehouse stores and the criteria compare against."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def to_rows(role: str, text: str | None) -> list[tuple[str, list]]:
    """(table, row) pairs for one record of the topic playing `role` (none for a tombstone:
    identity_merge's deletion of a key, whose rows the deletion notice removes)."""
    if text is None:
        return []
    try:
        rec = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise BadRecord(f"not JSON: {e}") from None
    if not isinstance(rec, dict):
        raise BadRecord("not a JSON object")
    table = ROLE_TABLE[role]
    if table == "events":
        data = rec.get("data") or {}
        if not isinstance(data, dict):
            raise BadRecord("'data' is not a JSON object")
        rec["data"] = data
        kind = rec.get("kind") if type(rec.get("kind")) is str else None  # any other kind: _row refuses it
        if kind == DELETE_KIND:
            return _deletion(rec)
        if kind in NOTICE_KINDS:
            return []
        if kind == "set":
            _need(rec, ("app", "distinct_id", "ts", "event_id"))
            return [("property_sets", [rec["app"], rec["distinct_id"], key, json_text(value), rec["ts"], rec["event_id"]])
                    for key, value in sorted(data.items())]
    return [(table, _row(rec, TABLES[table]))]


def _deletion(rec: dict) -> list[tuple[str, list]]:
    """A `$delete` notice: each of the person's ids goes on the deletion register, once (from
    the notice to the person itself; each of their other ids gets one too)."""
    _need(rec, ("app", "distinct_id", "person_id", "received_at"))
    ids, person = rec["data"].get("ids"), rec["data"].get("person_id")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids) or person not in ids:
        raise BadRecord("a $delete notice needs data.person_id and data.ids, the person's ids")
    if rec["person_id"] != person:
        return []
    return [("deleted_ids", [rec["app"], id_hash(rec["app"], i), rec["received_at"]]) for i in ids]


def id_hash(app: str, distinct_id: str) -> int:
    """What the deletion register keeps of an id: 64 bits of a hash, not the id."""
    return int.from_bytes(hashlib.blake2b(f"{app}\x1f{distinct_id}".encode(), digest_size=8).digest(), "big")


class Deletions:
    """The register of deleted ids ({(app, id_hash): log time of the deletion}, the
    deleted_ids table): a row about a deleted id from before its deletion that reaches the
    writer late (another topic, a replay) is not written. Rows from after it are a new
    person's who took up the id again."""

    def __init__(self, known: dict[tuple[str, int], int] | None = None):
        self.known = dict(known or {})

    def add(self, row: list) -> None:
        app, hashed, at = row
        self.known[(app, hashed)] = max(at, self.known.get((app, hashed), at))

    def keeps(self, table: str, row: list, stamp: int) -> bool:
        """Whether the row (a record of log time `stamp`) may be written."""
        if not self.known or table == "deleted_ids":
            return True
        columns = TABLES[table]
        app = row[columns.index("app")]
        for column in PERSON_COLUMNS:
            if column in columns:
                at = self.known.get((app, id_hash(app, row[columns.index(column)])))
                if at is not None and stamp <= at:
                    return False
        return True


def _row(rec: dict, columns) -> list:
    """The record's values of `columns`. This loop is the writer's per-record hot path: it
    takes the common case (every value present, of its column's exact type, in range) and
    leaves every other record to _need, which refuses it with the reason or accepts it (an
    optional field absent or null)."""
    row = []
    for k in columns:
        v = rec.get(k)
        kind = _COLUMN_KIND[k]
        if type(v) is not kind or (kind is int and not 0 <= v <= _NUMBER_MAX[k]):
            break
        row.append(json_text(v) if kind is dict else v)
    else:
        return row
    _need(rec, columns)
    return [json_text(rec[c]) if c in JSON_COLUMNS else rec.get(c) for c in columns]


def _need(rec: dict, keys) -> None:
    """Every column's field is there with a value the column takes."""
    for k in keys:
        if k not in rec:
            if k in OPTIONAL_FIELDS:
                continue
            raise BadRecord(f"missing {k!r}")
        v = rec[k]
        if k in NUMBER_COLUMNS:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _NUMBER_MAX[k]:
                raise BadRecord(f"{k!r} must be a whole number of ms from 1970 to 2100, got {str(v)[:40]!r}"
                                if k != "version" else f"'version' must be a whole number, got {str(v)[:40]!r}")
        elif k in JSON_COLUMNS:
            if not isinstance(v, dict):
                raise BadRecord(f"{k!r} must be a JSON object")
        elif not isinstance(v, str) and not (v is None and k in OPTIONAL_FIELDS):
            raise BadRecord(f"{k!r} must be a string, got {type(v).__name__}")
