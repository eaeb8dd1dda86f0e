"""Workflow campaigns as data (tracktor.yaml `apps[].campaigns`, or the control topic): a
trigger, then a graph of blocks (docs/workflows.md).

    campaigns:
      free_movie_fans:                      # the seed's example
        trigger: {event: Movie watch}       # or {segment: regulars} / {segment: x, change: exited} / {property: plan}
        start: limit
        blocks:
          limit: {entry_limit: 20, no: plan}          # the 20th entry takes "no": the limit is reached
          plan:  {where: {property: plan, op: eq, value: free}, yes: offer}
          offer: {letter: {subject: "For you, {{name}}", body: "<p>Hi {{name}}</p>"}}

Filters take `yes` / `no`; every other block `next`; a branch left out ends the person's
run. Filters: `entry_limit`, `where` (a segment condition: property criteria, or an event
done at least N times in a period), `in_segment`. Delays: `wait` (a duration) and
`wait_until` ({event, at_most}: `yes` when the event comes, `no` when the time is up).
Actions: `letter`, `in_app`, `webhook`, `set` (properties), `emit` (an event). The graph
has no cycles, so a run takes at most one step per block.
"""
from __future__ import annotations

import hashlib
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, model_validator

from udfs.limits import check_json
from udfs.segment_rules import MAX_DEFINITION_DEPTH, Segment, Text, invalid, parse_segment

MAX_BLOCKS = 64
MAX_VALUES = 10_000                   # JSON values in one definition
NEWSLETTER_PREFIX = "newsletter:"     # the statistics of newsletter NAME are campaign newsletter:NAME
MAX_TEMPLATE_CHARS = 100_000          # a letter's body, an in-app message
MAX_WAIT_MS = 400 * 86_400_000        # the longest delay
FILTERS = ("entry_limit", "where", "in_segment", "wait_until")
ACTIONS = ("letter", "in_app", "webhook", "set", "emit")
KINDS = ("entry_limit", "where", "in_segment", "wait", "wait_until", *ACTIONS)
STEP_EVENT = "Campaign step"          # the runner's own derived event: no campaign triggers on it
# What delivery records (tracktor/delivery/service.py) per action kind: done, refused, failed.
OUTCOME_EVENTS = {"letter": ("Letter sent", "Letter bounced", "Letter failed"),
                  "webhook": ("Webhook called", "Webhook failed", "Webhook failed"),
                  "in_app": ("Message sent",)}
LETTER_OPENED, LETTER_CLICKED = "Letter opened", "Letter clicked"   # the collector's /o/ and /c/
# The pipeline's own events: no client may send them (the collector refuses them with 400).
OWN_EVENTS = frozenset({STEP_EVENT, LETTER_OPENED, LETTER_CLICKED, *(n for o in OUTCOME_EVENTS.values() for n in o)})
_UNITS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def duration_ms(value) -> int:
    """A duration like 45s, 30m, 2h, 3d, 1w, or a number of seconds, in ms."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ms = int(value * 1000)
    elif isinstance(value, str) and value[:-1].isdigit() and value[-1:] in _UNITS:
        ms = int(value[:-1]) * _UNITS[value[-1]]
    else:
        raise ValueError(f"expected a duration like 30m, 2h or 3d, got {value!r}")
    if not 0 < ms <= MAX_WAIT_MS:
        raise ValueError(f"a duration must be more than 0 and at most 400d, got {value!r}")
    return ms


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Template = Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)


class Letter(_Model):
    """An email to the person's `email` property; {{property}} is filled in from their properties."""
    subject: StrictStr = Field(min_length=1, max_length=998)
    body: StrictStr = Template             # HTML; its links are tracked, an open pixel is added
    name: Text | None = None               # the letter's name in statistics (default: the block's id)


class InApp(_Model):
    title: StrictStr = Field(default="", max_length=998)
    body: StrictStr = Template


class Webhook(_Model):
    url: StrictStr = Field(min_length=1, max_length=2048)
    payload: dict[str, Any] = {}           # string values are templates too

    @model_validator(mode="after")
    def _http(self):
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"a webhook url must start with http:// or https://, got {self.url[:100]!r}")
        return self


class Emit(_Model):
    event: Text
    data: dict[str, Any] = {}


class WaitUntil(_Model):
    event: Text
    at_most: Any

    @model_validator(mode="after")
    def _duration(self):
        duration_ms(self.at_most)
        return self


class Trigger(_Model):
    event: Text | None = None              # a person event, derived ones (Cart abandoned) included
    segment: Text | None = None            # entering the segment (or leaving it: change: exited)
    change: Literal["entered", "exited"] = "entered"
    property: Text | None = None           # the property set to a new value

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("event", "segment", "property") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a trigger needs exactly one of event, segment, property")
        if self.event == STEP_EVENT:
            raise ValueError(f"{STEP_EVENT!r} is the runner's own event: no campaign triggers on it")
        return self


class Block(_Model):
    entry_limit: StrictInt | None = Field(default=None, ge=1)
    where: Any = None
    in_segment: Text | None = None
    wait: Any = None
    wait_until: WaitUntil | None = None
    letter: Letter | None = None
    in_app: InApp | None = None
    webhook: Webhook | None = None
    set: dict[str, Any] | None = None
    emit: Emit | None = None
    yes: Text | None = None
    no: Text | None = None
    next: Text | None = None

    @model_validator(mode="after")
    def _one_kind(self):
        kinds = [k for k in KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a block needs exactly one of {', '.join(KINDS)}, got {kinds or 'none'}")
        if self.kind in FILTERS and self.next is not None:
            raise ValueError(f"a {self.kind} block goes on by yes / no, not next")
        if self.kind not in FILTERS and (self.yes is not None or self.no is not None):
            raise ValueError(f"a {self.kind} block goes on by next, not yes / no")
        if self.wait is not None:
            duration_ms(self.wait)
        if self.set is not None and not self.set:
            raise ValueError("set needs at least one property")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def branches(self) -> tuple[str, ...]:
        return tuple(b for b in (self.yes, self.no, self.next) if b is not None)


class Campaign(_Model):
    name: Text
    trigger: Trigger
    start: Text
    blocks: dict[Text, Block] = Field(min_length=1, max_length=MAX_BLOCKS)
    active: bool = True                    # false: no one enters; runs under way go on

    @model_validator(mode="after")
    def _a_graph(self):
        if self.start not in self.blocks:
            raise ValueError(f"start: no block {self.start!r}")
        for bid, block in self.blocks.items():
            for to in block.branches:
                if to not in self.blocks:
                    raise ValueError(f"blocks.{bid}: no block {to!r} to go on to")
        self._no_cycle()
        return self

    def _no_cycle(self) -> None:
        state: dict[str, int] = {}  # 1: on the path, 2: done

        def visit(bid: str, path: tuple) -> None:
            if state.get(bid) == 2:
                return
            if state.get(bid) == 1:
                raise ValueError(f"blocks: a cycle {' -> '.join((*path, bid))}: a campaign's graph has none")
            state[bid] = 1
            for to in self.blocks[bid].branches:
                visit(to, (*path, bid))
            state[bid] = 2
        for bid in self.blocks:
            visit(bid, ())

    def conditions(self) -> dict[str, Segment]:
        """The `where` filters as segment conditions, each named by `condition_name`."""
        return {condition_name(self.name, bid): parse_segment(condition_name(self.name, bid), {"where": b.where})
                for bid, b in self.blocks.items() if b.where is not None}

    def produces(self) -> tuple[set[str], set[str]]:
        """The events (its actions' outcomes, its emits) and properties its actions make."""
        events, props = set(), set()
        for b in self.blocks.values():
            events |= set(OUTCOME_EVENTS.get(b.kind, ()))
            if b.letter is not None:
                events |= {LETTER_OPENED, LETTER_CLICKED}
            if b.emit is not None:
                events.add(b.emit.event)
            if b.set is not None:
                props |= set(b.set)
        return events, props

    def letter_name(self, bid: str) -> str:
        return self.blocks[bid].letter.name or bid


def condition_name(campaign: str, block: str) -> str:
    """A `where` filter's name among the app's conditions: one per (campaign, block), whatever
    characters the two names hold."""
    return "c-" + hashlib.sha256(orjson.dumps([campaign, block])).hexdigest()[:24]


def check_no_loops(campaigns: dict[str, "Campaign"]) -> None:
    """ValueError naming the loop when a campaign's actions can trigger itself, or another
    that leads back to it (an emit of a trigger event, a letter of a campaign triggered by
    Letter sent, a set of a trigger property). Segment triggers are not followed: which
    segment an action changes is only known at run time."""
    edges = {}
    for name, c in campaigns.items():
        events, props = c.produces()
        edges[name] = sorted(other for other, o in campaigns.items()
                             if o.trigger.event in events or o.trigger.property in props)
    state: dict[str, int] = {}

    def visit(name: str, path: tuple) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            loop = " -> ".join((*path[path.index(name):], name))
            raise ValueError(f"campaigns {loop}: each one's actions trigger the next, without end")
        state[name] = 1
        for other in edges[name]:
            visit(other, (*path, name))
        state[name] = 2
    for name in sorted(campaigns):
        visit(name, ())


def branch_keys(node):
    """YAML 1.1 reads a bare `yes:` / `no:` key as true / false: the branches they name."""
    if not isinstance(node, dict) or not isinstance(node.get("blocks"), dict):
        return node
    blocks = {bid: {({True: "yes", False: "no"}.get(k, k) if isinstance(k, bool) else k): v for k, v in b.items()}
              if isinstance(b, dict) else b for bid, b in node["blocks"].items()}
    return {**node, "blocks": blocks}


def parse_campaign(name: str, node) -> Campaign:
    """A definition, validated; ValueError naming the campaign and the field at fault."""
    node = branch_keys(node)
    check_json(node, f"campaign {name!r}", MAX_DEFINITION_DEPTH, max_values=MAX_VALUES)  # string keys only
    if name.startswith(NEWSLETTER_PREFIX):
        raise ValueError(f"campaign {name!r}: names starting {NEWSLETTER_PREFIX!r} are newsletters'")
    try:
        campaign = Campaign.model_validate({**node, "name": name} if isinstance(node, dict) else node)
        campaign.conditions()  # the where filters, as segment conditions
        return campaign
    except ValidationError as e:
        raise invalid(f"campaign {name!r}", e) from None
    except ValueError as e:
        raise ValueError(f"campaign {name!r}: {e}") from None
