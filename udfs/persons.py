"""The per-person jobs' common ground (segment_eval, cart_timeout): state per person
(`app:person`), and the hand-over of a merged-away person's state to its survivor.

Why a hand-over: these jobs key their state by person so their work spreads over subtasks
within one app, and a merge joins two keys that may live on different subtasks.
identity_merge tells both persons of a merge on tracktor.events, in order with their own
events ($merge notices at the merge's log time M). Then:

- the merged-away person A, once its clock passes M (its own timers before M have fired on
  its own history), hands its state to B through the handoffs topic and becomes a redirect;
- the survivor B, from its notice on, holds what comes for it (a later merge's notice too:
  that person joins after what came before it); once its clock passes M and every awaited
  handoff is in, it takes them in (the job's `combine`), then goes on with what it held, in
  order, and with the timers that came due meanwhile.

So everything before M is decided on each person's own history and everything after on the
joint one, whatever the order in which the notice, the handoff and other records arrive:
the same records come out at any parallelism and on a replay. Records that still reach a
redirect are forwarded to where it points.

A job's `Logic` (udfs/segments.py, udfs/carts.py) decides what a person's records mean;
this module only routes. Everything here is plain data (JSON-able dicts), no Flink.
"""
from __future__ import annotations

from typing import Protocol

from udfs.envelope import BadRecord
from udfs.limits import MAX_HELD_RECORDS, MAX_STATE_DEPTH, check_json

MERGE_KIND = "merge"
DELETE_KIND = "delete"
SECOND = 1000
MAX_LATE_WAKES = 100  # wake times handled at once in one step (each moves the person's next one on)


def wake_second(t: int) -> int:
    """The whole second a person's wake time is coalesced to (one timer per bucket and second)."""
    return -(-t // SECOND) * SECOND


class Logic(Protocol):
    """What a per-person job decides. `out(role, key, record, ts)` collects an output record."""

    def new(self, app: str, person: str) -> dict: ...
    def apply(self, s: dict, event: dict, ts: int, out) -> None: ...
    def fire(self, s: dict, now: int, out) -> None: ...
    def due(self, s: dict) -> int | None: ...
    def combine(self, s: dict, other: dict, at: int, out) -> None: ...
    def leave(self, s: dict, at: int, reason: str, out) -> None: ...
    def empty(self, s: dict) -> bool: ...


def person_key(app: str, person: str) -> str:
    return f"{app}:{person}"


def split_key(key: str) -> tuple[str, str]:
    app, _, person = key.partition(":")
    return app, person


def handoff(job: str, app: str, source: str, target: str, at: int, state: dict | None = None,
            record: dict | None = None, record_ts: int | None = None) -> dict:
    """A tracktor.handoffs record: `source`'s state for `target` (or one record forwarded)."""
    rec = {"job": job, "app": app, "from": source, "to": target, "at": at}
    if state is not None:
        rec["state"] = state
    if record is not None:
        rec["record"], rec["record_ts"] = record, record_ts
    return rec


EVENT_KINDS = {"track", "cart", "set", "merge", "delete", "derived", "segment"}


def check_event(record: dict) -> dict:
    """An event of tracktor.events / tracktor.derived as the per-person jobs need it, or
    BadRecord saying what is wrong (the topic schemas, checked by hand for speed)."""
    for key in ("event_id", "app", "event", "person_id"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise BadRecord(f"{key!r} must be a non-empty string")
    if record.get("kind") not in EVENT_KINDS:
        raise BadRecord(f"kind must be one of {', '.join(sorted(EVENT_KINDS))}, got {record.get('kind')!r}"[:200])
    ts = record.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts < 10 ** 14:
        raise BadRecord("ts must be a whole number of ms since the epoch")
    if not isinstance(record.get("data"), dict):
        raise BadRecord("data must be a JSON object")
    try:
        check_json(record["data"])
    except ValueError as e:
        raise BadRecord(str(e)) from None
    return record


def segment_change(record: dict) -> dict:
    """A tracktor.segments record as an input event of kind `segment`, or BadRecord."""
    for key in ("app", "segment", "person_id"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise BadRecord(f"a segment change needs {key!r}")
    if record.get("change") not in ("entered", "exited") or not isinstance(record.get("version"), int):
        raise BadRecord("a segment change needs change (entered / exited) and a version")
    return {"event_id": f"segment:{record['segment']}:{record['version']}", "app": record["app"], "kind": "segment",
            "event": record["segment"], "person_id": record["person_id"], "ts": record.get("ts", 0),
            "data": {"change": record["change"]}}


CONTROL_KINDS = ("segment", "campaign")  # tracktor.control: segment_eval's, workflow_runner's


def definition_change(record: dict, kind: str, apps) -> tuple[str, str] | None:
    """The definition a tracktor.control record of `kind` changes ("app:name") and its app;
    None for another job's kind; BadRecord for a malformed record or an app not in `apps`."""
    if record.get("kind") in CONTROL_KINDS and record["kind"] != kind:
        return None
    if record.get("kind") != kind:
        raise BadRecord(f"unknown control record kind {record.get('kind')!r} (expected "
                        f"{' or '.join(repr(k) for k in CONTROL_KINDS)})")
    for key in ("app", "name"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise BadRecord(f"a {kind} change needs {key!r}")
    if "definition" not in record or not (record["definition"] is None or isinstance(record["definition"], dict)):
        raise BadRecord(f"a {kind} change needs 'definition' (an object, or null to delete)")
    if record["app"] not in apps:
        raise BadRecord(f"no app {record['app']!r} in this job's configuration")
    return f"{record['app']}:{record['name']}", record["app"]


def early_key(source: str, at: int) -> str:
    """Where a handoff that came before its merge was taken in waits: its source and time."""
    return f"{source}@{at}"


def _keep_early(early: dict, key: str, state: dict) -> None:
    """`state` waits under `key`, after those already there: `key#1`, `key#2`, … (an id
    deleted and merged into the same survivor again at the same ms hands over twice, in
    order, and both may come before the survivor takes in the first)."""
    slot, n = key, 0
    while slot in early:
        n += 1
        slot = f"{key}#{n}"
    early[slot] = state


def _take_early(early: dict, source: str, at: int) -> dict:
    """The first handoff waiting for the merge of `source` at `at`; the next one, if any,
    moves up."""
    key = early_key(source, at)
    state, n = early.pop(key), 1
    while f"{key}#{n}" in early:
        early[key if n == 1 else f"{key}#{n - 1}"] = early.pop(f"{key}#{n}")
        n += 1
    return state


def check_handoff(record: dict) -> dict:
    """A tracktor.handoffs record, or BadRecord saying what is wrong."""
    for key in ("job", "app", "from", "to"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise BadRecord(f"a handoff's {key!r} must be a non-empty string")
    if "for" in record and (not isinstance(record["for"], str) or not record["for"]):
        raise BadRecord("a handoff's 'for' must be a non-empty string")
    if isinstance(record.get("at"), bool) or not isinstance(record.get("at"), int) or record["at"] < 0:
        raise BadRecord("a handoff's 'at' must be a whole number of ms")
    if not isinstance(record.get("state", {}), dict) or not isinstance(record.get("record", {}), dict):
        raise BadRecord("a handoff's state and record must be JSON objects")
    try:
        check_json(record, "the handoff", MAX_STATE_DEPTH)
    except ValueError as e:
        raise BadRecord(str(e)) from None
    return record


def _survives(record: dict) -> bool:
    """A merge notice making the person a survivor (others merged into it)."""
    return record.get("kind") == MERGE_KIND and bool((record.get("data") or {}).get("merged"))


class Router:
    """Routes one person's inputs (events, merge notices, handoffs) and timers to a Logic.

    A person's entry: {"s": the logic's state, optional "merge": {"to", "at"} (merged away,
    hand-over pending), "awaiting": {source: at}, "ready": bool, "early": {"source@at":
    state} (handoffs in before their merge is taken in; keyed by the merge's time too, as an
    id deleted and merged again hands over twice; `source@at#n` queued behind it when that
    is at the same ms), "held": [[record, ts], ...], "to":
    survivor (a redirect; its "early": handoffs for this id as a survivor again, a merge
    reversed, whose notice is not read yet)}."""

    def __init__(self, logic: Logic, job: str, roles: dict):
        self.logic, self.job, self.roles = logic, job, roles  # roles: output role -> topic name

    # -- entry points ------------------------------------------------------------------
    def on_record(self, key: str, entry: dict | None, record: dict, ts: int, out) -> dict | None:
        """An event (tracktor.events, tracktor.derived) or a handoff for the person `key`."""
        app, person = split_key(key)
        entry = entry or {"s": self.logic.new(app, person)}
        if "job" in record and "from" in record:  # a handoff
            return self._handoff(key, entry, check_handoff(record), out)
        check_event(record)
        if "to" in entry:  # merged away and handed over: what still comes goes to the survivor
            kept = {"early": entry["early"]} if entry.get("early") else {}
            if record.get("kind") == DELETE_KIND:  # the person is deleted: its survivor gets a deletion of its own
                return {"s": self.logic.new(app, person), **kept} if kept else None
            if _survives(record):  # the merge reversed (an older alias read late): a person again
                return self._notice({"s": self.logic.new(app, person), **kept}, record, ts, out)
            out("handoffs", person_key(app, entry["to"]),
                handoff(self.job, app, person, entry["to"], ts, record=record, record_ts=ts), ts)
            return entry
        if self._merging(entry):  # a later merge notice too: what it brings joins after what came before it
            notice = record.get("kind") in (MERGE_KIND, DELETE_KIND)  # never refused: others wait on them
            if len(entry.setdefault("held", [])) >= MAX_HELD_RECORDS and not notice:
                raise ValueError(f"more than {MAX_HELD_RECORDS} records held for {key} while its merge is handed over")
            entry["held"].append([record, ts])
            return entry
        if record.get("kind") == MERGE_KIND:
            return self._notice(entry, record, ts, out)
        self._apply(key, entry, record, ts, out)
        return self._tidy(entry)

    def on_timer(self, key: str, entry: dict, now: int, out) -> dict | None:
        """The person's clock passed `now` (only called when `wake(entry) <= now`)."""
        app, person = split_key(key)
        merge = entry.get("merge")
        if merge and merge["at"] <= now:
            self._fire(entry, merge["at"], out)  # its own timers up to the merge, then hand over
            self.logic.leave(entry["s"], merge["at"], "merged", out)
            held = entry.get("held") or []
            # deleted after the merge, or the survivor again (the merge reversed): what came
            # before is the survivor's, the person starts anew from there
            cut = next((i for i, (r, _) in enumerate(held) if r.get("kind") == DELETE_KIND or _survives(r)), None)
            if cut is not None:
                entry["held"] = held[:cut]
            # handoffs already in are for notices not taken in yet (no merge of its own was
            # pending at its merge: a later notice is held till then): the new person's, or
            # kept on the redirect for when its notice comes (a merge reversed)
            later_early = entry.pop("early", {})
            out("handoffs", person_key(app, merge["to"]),
                handoff(self.job, app, person, merge["to"], merge["at"], state=self._export(entry)), merge["at"])
            if cut is None:
                return {"to": merge["to"], **({"early": later_early} if later_early else {})}
            # no redirect: a deleted id may come back as someone new (the survivor gets its own
            # deletion), a survivor again takes the others in; from the records held after
            # the deletion, or from the notice on
            fresh = {"s": self.logic.new(app, person), "early": later_early} if later_early else None
            for record, ts in held[cut + (held[cut][0].get("kind") == DELETE_KIND):]:
                fresh = self.on_record(key, fresh, record, ts, out)
            wake = self.wake(fresh) if fresh is not None else None
            if wake is not None and wake <= now:  # at this time too (its timer fires now): decided now
                return self.on_timer(key, fresh, now, out)
            return fresh
        if entry.get("awaiting") and not entry.get("ready"):
            # taking one merge in may bring a held notice of another at a time the clock
            # passed already, its handoff perhaps in: taken on now (the wake time does not
            # move, so no timer would come for it)
            while entry is not None and entry.get("awaiting") and not entry.get("ready") \
                    and (first := min(entry["awaiting"].values())) <= now:
                self._fire(entry, first, out)
                entry["ready"] = True
                entry = self._complete(key, entry, now, out)
            return entry
        self._fire(entry, now, out)
        return self._tidy(entry)

    def late_wakes(self, key: str, entry: dict | None, now: int, out) -> dict | None:
        """The person woken at once, as often as their wake time is behind the clock `now`
        and moves (each at the whole second its timer would have fired at): a timer set for
        a time the clock has passed would wait for the clock's next move, which may never
        come (a quiet input, the end of a replay)."""
        wake = self.wake(entry) if entry is not None else None
        for _ in range(MAX_LATE_WAKES):
            if wake is None or wake_second(wake) > now:
                break
            entry = self.on_timer(key, entry, wake_second(wake), out)
            later = self.wake(entry) if entry is not None else None
            if later == wake:
                break  # nothing more to do at this time (it waits for a handoff)
            wake = later
        return entry

    def revisit(self, key: str, entry: dict, now: int, cause: dict, out) -> dict | None:
        """The job's definitions changed: the person is evaluated again (once a merge in
        progress is over, it is anyway)."""
        if "s" in entry and not self._merging(entry):
            self.logic.revisit(entry["s"], now, out, cause)
            return self._tidy(entry)
        return entry

    def wake(self, entry: dict) -> int | None:
        """When the person needs its clock: its merge, or the logic's next timer."""
        if "to" in entry:
            return None
        if entry.get("merge"):
            return entry["merge"]["at"]
        if entry.get("awaiting") and not entry.get("ready"):
            return min(entry["awaiting"].values())
        if self._merging(entry):
            return None  # waits for a handoff, not for time
        return self.logic.due(entry["s"])

    # -- merges --------------------------------------------------------------------------
    @staticmethod
    def _merging(entry: dict) -> bool:
        return bool(entry.get("merge") or entry.get("awaiting"))

    def _notice(self, entry: dict, record: dict, ts: int, out) -> dict:
        data = record.get("data") or {}
        if data.get("merged_into"):
            entry["merge"] = {"to": data["merged_into"], "at": ts}
        for source in data.get("merged") or []:
            entry.setdefault("awaiting", {})[source] = ts
            entry["ready"] = False
        return entry

    def _handoff(self, key: str, entry: dict, record: dict, out) -> dict:
        app, person = split_key(key)
        # a redirect passes it on, but for a state written for this id itself (a survivor
        # again, a merge reversed, its notice not read yet): kept below, as any early handoff
        if "to" in entry and ("state" not in record or record.get("for", record["to"]) != person):
            out("handoffs", person_key(app, entry["to"]),
                {**record, "to": entry["to"], "for": record.get("for", record["to"])}, record["at"])
            return entry
        if "record" in record:  # a record that reached the merged-away person late
            return self.on_record(key, entry, record["record"], record["record_ts"], out)
        _keep_early(entry.setdefault("early", {}), early_key(record["from"], record["at"]), record.get("state") or {})
        return self._complete(key, entry, None, out) if entry.get("ready") else entry

    def _apply(self, key: str, entry: dict, record: dict, ts: int, out) -> None:
        """An event for the logic; a deletion (`$delete`, identity_merge) lets the person
        leave and forgets them: what comes after it is a new person's."""
        if record.get("kind") == DELETE_KIND:
            self.logic.leave(entry["s"], ts, "deleted", out)
            entry["s"] = self.logic.new(*split_key(key))
        else:
            self.logic.apply(entry["s"], record, ts, out)

    def _complete(self, key: str, entry: dict, now: int | None, out) -> dict | None:
        """Once the clock passed the merge and every awaited handoff is in: take them in (a
        handed-over person may bring merges of its own still to come: those are awaited
        in turn), then go on with the held records and the timers that came due."""
        if not entry.get("ready"):
            return entry
        while entry.get("awaiting"):
            awaiting, early = entry["awaiting"], entry.setdefault("early", {})
            if not all(early_key(source, at) in early for source, at in awaiting.items()):
                return entry
            entry["awaiting"] = {}
            for source, at in sorted(awaiting.items()):
                self._adopt(entry, _take_early(early, source, at), at, out)
        for done in ("awaiting", "ready"):
            entry.pop(done, None)
        if not entry.get("early"):
            entry.pop("early", None)
        for record, ts in entry.pop("held", []):
            if self._merging(entry):  # a later merge among the held records: hold the rest again
                entry.setdefault("held", []).append([record, ts])
            elif record.get("kind") == MERGE_KIND:
                entry = self._notice(entry, record, ts, out)
            else:
                self._apply(key, entry, record, ts, out)
        if now is not None and not self._merging(entry):
            self._fire(entry, now, out)
        return self._tidy(entry)

    def _adopt(self, entry: dict, handed: dict, at: int, out) -> None:
        """A handed-over person (itself perhaps the survivor of earlier merges) joins this one."""
        self.logic.combine(entry["s"], handed.get("s") or {}, at, out)
        for record, ts in handed.get("held") or []:
            entry.setdefault("held", []).append([record, ts])

    def _export(self, entry: dict) -> dict:
        """What a merged-away person hands over: its state and the records it held after the
        merge (merges of its own were taken in before it hands over: a later notice is held)."""
        return {k: v for k, v in entry.items() if k in ("s", "held")}

    def _fire(self, entry: dict, now: int, out) -> None:
        due = self.logic.due(entry["s"])
        if due is not None and due <= now:
            self.logic.fire(entry["s"], now, out)

    def _tidy(self, entry: dict) -> dict | None:
        """None (drop the entry) once nothing is left to remember."""
        if len(entry) == 1 and self.logic.empty(entry["s"]):
            return None
        return entry
