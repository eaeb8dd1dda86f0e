"""workflow_runner's decisions (DESIGN.md, Workflow campaigns; docs/workflows.md).

Per person: their properties and the event counts the app's campaigns read (kept as
segment_eval keeps them: udfs/segments.py), the segments they are in (from
tracktor.segments), and per campaign how many times they entered it and their run, if one
is under way: the block they wait in, until when, and for which event.

Events are queued and taken in time order once the job's clock (the watermark) passes them,
so the order in which the input topics deliver them changes nothing. A trigger (an event, a
segment entered or left, a property changed) starts a run, unless
the person is in one of that campaign already: the run goes through the blocks at once, up
to a delay or its end. Each block passed is a `Campaign step` event (the statistics), and
each action one request on tracktor.actions. Time is the log time, as in cart_timeout: a
delay ends when the job's clock (the watermark) passes it, so a replay decides alike.
Every id is deterministic: a run is (app, campaign, the person it began with and their
first moment, entry number), an action that run and its block, so a replay or a restart
writes the same ids and delivery performs each once.
"""
from __future__ import annotations

import hashlib
from bisect import insort

import orjson

from udfs.campaigns import STEP_EVENT, Campaign, check_no_loops, condition_name, duration_ms, parse_campaign
from udfs.envelope import BadRecord, dead_letter, failure_reason
from udfs.letters import render, render_values
from udfs.persons import definition_change
from udfs.segments import (HISTORY_DAYS, AppSegments, combine_facts, day_of, holds, observe, trim,
                           visible)

MAX_PENDING = 1000             # events queued per person for the clock; past it the oldest are taken at once,
MAX_PENDING_BYTES = 256 * 1024  # as past this many bytes of them
_ORDER = {"set": 0, "segment": 1}  # at one moment: properties, then segment changes, then events


class AppCampaigns:
    """One app's campaigns, indexed by what starts or resumes them."""

    def __init__(self, campaigns: dict[str, Campaign]):
        self.campaigns = dict(sorted(campaigns.items()))
        self.facts = AppSegments({k: v for c in self.campaigns.values() for k, v in c.conditions().items()})
        self.by_event: dict[str, list[str]] = {}
        self.by_segment: dict[tuple[str, str], list[str]] = {}
        self.by_property: dict[str, list[str]] = {}
        self.waited = {b.wait_until.event for c in self.campaigns.values() for b in c.blocks.values()
                       if b.wait_until is not None}
        for name, c in self.campaigns.items():
            t = c.trigger
            if t.event is not None:
                self.by_event.setdefault(t.event, []).append(name)
            elif t.segment is not None:
                self.by_segment.setdefault((t.segment, t.change), []).append(name)
            else:
                self.by_property.setdefault(t.property, []).append(name)

    def reads(self, event: str) -> bool:
        """Whether a `where` filter counts this event."""
        return event in self.facts.by_event

    def wants(self, event: str) -> bool:
        """Whether a campaign triggers on, counts or waits for this event."""
        return event in self.by_event or event in self.waited or self.reads(event)


def action_id(app: str, campaign: str, origin: str, entry: int, block: str) -> str:
    return hashlib.sha256(orjson.dumps([app, campaign, origin, entry, block])).hexdigest()[:32]


class WorkflowLogic:
    """The Logic (udfs/persons.py) of workflow_runner. A person's state: {"app", "person",
    "props", "counts", "in": [segments], "entries": {campaign: n}, "runs": {campaign: run},
    "now"}; a run: {"n": its entry, "origin": the person it began with, "block", "due": when
    its delay ends or None, "until": the event it waits for or None}."""

    def __init__(self, apps: dict[str, dict[str, Campaign]], history_days: int = HISTORY_DAYS,
                 topics: dict[str, str] | None = None):
        self.apps = {app: AppCampaigns(c) for app, c in apps.items()}
        self.history_days = history_days
        self.topics = topics or {}  # topic names by role, for dead letters

    def definitions(self, app: str) -> AppCampaigns:
        return self.apps.setdefault(app, AppCampaigns({}))

    # -- definitions while running (tracktor.control) ------------------------------------
    def change_of(self, record: dict) -> tuple[str, str] | None:
        """The campaign a control record changes ("app:name") and its app; None for another
        job's record (a segment), BadRecord for a malformed one."""
        return definition_change(record, "campaign", self.apps)

    def adopt(self, key: str, definition: dict | None) -> None:
        """Take in a changed definition (None deletes it); ValueError when it is invalid, and
        the one before it stays."""
        app, _, name = key.partition(":")
        campaigns = dict(self.definitions(app).campaigns)
        if definition is None:
            campaigns.pop(name, None)
        else:
            campaigns[name] = parse_campaign(name, definition)
        check_no_loops(campaigns)
        self.apps[app] = AppCampaigns(campaigns)

    # -- Logic ---------------------------------------------------------------------------
    def new(self, app: str, person: str) -> dict:
        return {"app": app, "person": person, "props": {}, "counts": {}, "in": [], "entries": {}, "runs": {}, "now": 0}

    def apply(self, s: dict, event: dict, ts: int, out) -> None:
        """Queue an event the app's campaigns care about: events are taken in time order once
        the clock passes them (`fire`), whatever the order in which the topics deliver them, so
        a Cart abandoned always sees the properties set before it."""
        kind, name = event["kind"], event["event"]
        defs = self.definitions(s["app"])
        if kind == "merge" or name == STEP_EVENT or not defs.campaigns:
            return
        if kind not in ("set", "segment") and not defs.wants(name):
            return
        self._queue(s, [ts, _ORDER.get(kind, 2), event["event_id"], event, len(orjson.dumps(event))], out)

    def _queue(self, s: dict, item: list, out) -> None:
        """Into the person's queue, in time order; past MAX_PENDING events or MAX_PENDING_BYTES
        (the clock has stalled) the oldest are taken at once, so the state stays bounded."""
        pending = s.setdefault("pending", [])
        if any(p[2] == item[2] for p in pending):
            return  # read twice
        insort(pending, item, key=lambda p: p[:3])
        s["pending_bytes"] = s.get("pending_bytes", 0) + item[4]
        while len(pending) > MAX_PENDING or s["pending_bytes"] > MAX_PENDING_BYTES:
            self._take_or_refuse(s, self._pop(s), out)

    @staticmethod
    def _pop(s: dict) -> list:
        item = s["pending"].pop(0)
        s["pending_bytes"] -= item[4]
        if not s["pending"]:
            del s["pending"], s["pending_bytes"]
        return item

    def due(self, s: dict) -> int | None:
        times = [run["due"] for run in s["runs"].values() if run.get("due") is not None]
        if s.get("pending"):
            times.append(s["pending"][0][0])
        return min(times) if times else None

    def fire(self, s: dict, now: int, out) -> None:
        """Everything up to `now` in time order: queued events, and delays that end (an event
        at the very moment a delay ends comes first)."""
        defs = self.definitions(s["app"])
        while True:
            pending = s.get("pending") or []
            waiting = sorted((run["due"], name) for name, run in s["runs"].items()
                             if run.get("due") is not None and run["due"] <= now)
            if pending and pending[0][0] <= now and (not waiting or pending[0][0] <= waiting[0][0]):
                self._take_or_refuse(s, self._pop(s), out)
                continue
            if not waiting:
                return
            at, name = waiting[0]
            s["now"] = max(s["now"], at)
            run, campaign = s["runs"][name], defs.campaigns.get(name)
            if campaign is None or run["block"] not in campaign.blocks:
                del s["runs"][name]  # its campaign was deleted, or the block it waited in
                continue
            block = campaign.blocks[run["block"]]
            run["until"] = run["due"] = None
            if block.kind not in ("wait", "wait_until"):
                del s["runs"][name]  # changed while it waited
                continue
            self._go(s, campaign, run, block.next if block.kind == "wait" else block.no, at, out)

    def _take_or_refuse(self, s: dict, item: list, out) -> None:
        """`_take`, or the event to the dead letters with the reason (the person goes on)."""
        try:
            self._take(s, item, out)
        except Exception as e:  # noqa: BLE001 - one event must never stop the person, nor the job
            event = item[3]
            role = "segments" if event["kind"] == "segment" else "derived" if event["kind"] == "derived" else "events"
            out("dead_letter", "workflow_runner", dead_letter("workflow_runner", self.topics.get(role, role),
                                                              failure_reason(e), orjson.dumps(event).decode()), item[0])

    def _take(self, s: dict, item: list, out) -> None:
        """One event, at its time: the person's facts, then the runs it resumes and those it starts."""
        ts, event = item[0], item[3]
        kind, name = event["kind"], event["event"]
        defs = self.definitions(s["app"])
        s["now"] = max(s["now"], ts)
        s.setdefault("born", ts)  # this person's first moment: a deleted id that comes back is someone new
        self._trim(s, defs)
        if kind == "segment":
            change = event["data"].get("change")
            if change not in ("entered", "exited"):
                raise BadRecord("a segment change needs change: entered or exited")
            members = set(s["in"]) - {name}
            s["in"] = sorted(members | {name} if change == "entered" else members)
            started = defs.by_segment.get((name, change), ())
        elif kind == "set":
            watched = [k for k in event.get("data") or {} if k in defs.by_property]
            before = {k: visible(s["props"]).get(k) for k in watched}
            observe(s, defs.facts, event, ts)
            after = visible(s["props"])
            started = sorted({c for k in watched if after.get(k) != before[k] for c in defs.by_property[k]})
        else:
            if defs.reads(name):
                observe(s, defs.facts, event, ts)
            for campaign in sorted(s["runs"]):  # runs waiting for this event go on
                run, c = s["runs"][campaign], defs.campaigns.get(campaign)
                if run.get("until") != name:
                    continue
                block = c.blocks.get(run["block"]) if c is not None else None
                if block is None or block.wait_until is None:
                    del s["runs"][campaign]  # changed while it waited (this bucket not revisited yet)
                    continue
                run["until"] = run["due"] = None
                self._go(s, c, run, block.yes, ts, out)
            started = defs.by_event.get(name, ())
        for campaign in started:
            self._enter(s, defs.campaigns[campaign], ts, out)

    def combine(self, s: dict, other: dict, at: int, out) -> None:
        combine_facts(s, other)
        for item in other.get("pending") or []:
            self._queue(s, item, out)
        s["in"] = sorted(set(s["in"]) | set(other.get("in") or []))
        for name, n in (other.get("entries") or {}).items():
            s["entries"][name] = s["entries"].get(name, 0) + n
        for name, blocks in (other.get("reached") or {}).items():
            mine = s.setdefault("reached", {}).setdefault(name, [])
            mine += [b for b in blocks if b not in mine]
        for name, run in (other.get("runs") or {}).items():
            s["runs"].setdefault(name, run)  # a person in a campaign twice goes on with the survivor's run
        s["now"] = max(s["now"], other.get("now") or 0, at)

    def leave(self, s: dict, at: int, reason: str, out) -> None:
        if reason == "deleted":
            s["runs"] = {}  # nothing more is sent to a deleted person (a merged one takes its runs along)

    def empty(self, s: dict) -> bool:
        return not (s["props"] or s["counts"] or s["in"] or s["entries"] or s["runs"] or s.get("pending"))

    def revisit(self, s: dict, now: int, out, cause: dict) -> None:
        """A campaign was changed or deleted: a run waiting in a block that is gone (or is no
        longer a delay) ends."""
        name = cause.get("segment")
        run = s["runs"].get(name)
        campaign = self.definitions(s["app"]).campaigns.get(name)
        if run is not None and (campaign is None or run["block"] not in campaign.blocks
                                or campaign.blocks[run["block"]].kind not in ("wait", "wait_until")):
            del s["runs"][name]

    # -- runs ----------------------------------------------------------------------------
    def _enter(self, s: dict, campaign: Campaign, now: int, out) -> None:
        if not campaign.active or campaign.name in s["runs"]:
            return  # one run per person and campaign at a time
        n = s["entries"].get(campaign.name, 0) + 1
        s["entries"][campaign.name] = n
        run = {"n": n, "origin": f"{s['person']}@{s.get('born', now)}", "block": campaign.start, "due": None,
               "until": None}
        s["runs"][campaign.name] = run
        self._go(s, campaign, run, campaign.start, now, out)

    def _go(self, s: dict, campaign: Campaign, run: dict, bid: str | None, now: int, out) -> None:
        """The run from block `bid` on at time `now`, up to a delay (it stays) or its end."""
        defs = self.definitions(s["app"])
        while bid is not None:
            block = campaign.blocks[bid]
            kind = block.kind
            aid = action_id(s["app"], campaign.name, run["origin"], run["n"], bid)
            self._derived(s, STEP_EVENT, f"{aid}:step", now, {"campaign": campaign.name, "block": bid, "kind": kind,
                                                               "entry": run["n"]}, out)
            if kind == "entry_limit":
                reached = s.setdefault("reached", {}).setdefault(campaign.name, [])
                if run["n"] < block.entry_limit:
                    bid = block.yes
                elif bid not in reached:  # the limit is reached: "no", once (also when a merge jumped past it)
                    reached.append(bid)
                    bid = block.no
                else:
                    break  # past the limit: the person goes no further
            elif kind == "where":
                cond = defs.facts.segments[condition_name(campaign.name, bid)].where
                bid = block.yes if holds(cond, s, visible(s["props"]), day_of(now)) else block.no
            elif kind == "in_segment":
                bid = block.yes if block.in_segment in s["in"] else block.no
            elif kind == "wait":
                run.update(block=bid, due=now + duration_ms(block.wait), until=None)
                return
            elif kind == "wait_until":
                run.update(block=bid, due=now + duration_ms(block.wait_until.at_most), until=block.wait_until.event)
                return
            else:
                out("actions", f"{s['app']}:{s['person']}", self._action(s, campaign, run, bid, aid, now), now)
                bid = block.next
        s["runs"].pop(campaign.name, None)

    def _action(self, s: dict, campaign: Campaign, run: dict, bid: str, aid: str, now: int) -> dict:
        block = campaign.blocks[bid]
        props = {**visible(s["props"]), "person_id": s["person"]}
        request = {"action_id": aid, "app": s["app"], "campaign": campaign.name, "block": bid, "kind": block.kind,
                   "person_id": s["person"], "ts": now, "entry": run["n"]}
        if block.letter is not None:
            email = props.get("email")
            request["letter"] = {"name": campaign.letter_name(bid), "to": email if isinstance(email, str) else None,
                                 "subject": render(block.letter.subject, props),
                                 "html": render(block.letter.body, props, as_html=True)}
        elif block.in_app is not None:
            request["in_app"] = {"title": render(block.in_app.title, props), "body": render(block.in_app.body, props)}
        elif block.webhook is not None:
            request["webhook"] = {"url": block.webhook.url, "payload": render_values(block.webhook.payload, props)}
        elif block.set is not None:
            request["set"] = render_values(block.set, props)
        else:
            request["emit"] = {"event": block.emit.event, "data": render_values(block.emit.data, props)}
        return request

    def _trim(self, s: dict, defs: AppCampaigns) -> None:
        today = day_of(s["now"])
        if s.get("trimmed") != today:
            trim(s, defs.facts, today, self.history_days)
            s["trimmed"] = today

    @staticmethod
    def _derived(s: dict, name: str, event_id: str, ts: int, data: dict, out) -> None:
        out("derived", f"{s['app']}:{s['person']}", {
            "event_id": event_id, "app": s["app"], "kind": "derived", "event": name, "distinct_id": s["person"],
            "person_id": s["person"], "ts": ts, "received_at": ts, "data": data}, ts)
