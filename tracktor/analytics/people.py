"""People: the People list and its search, and one person's page (ids, profile, segments,
newest events), read from ClickHouse with the templates in sql/queries/."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from tracktor.warehouse import query_template

RECENT_EVENTS = 50   # a person page shows their newest 50 events
MAX_QUERY = 200      # characters of a search


@dataclass
class PersonSummary:
    person: str
    ids: list[str]          # every distinct id that resolves to the person, their own included
    email: str
    properties: dict


@dataclass
class PersonEvent:
    ts: datetime
    event: str
    kind: str
    distinct_id: str
    data: dict


@dataclass
class PersonPage:
    person: str
    ids: list[str]
    properties: dict
    updated: datetime | None             # when the profile last changed (None: no profile yet)
    segments: list[tuple[str, datetime]]  # the segments they are in now, with when they entered
    events: list[PersonEvent]             # newest first, at most RECENT_EVENTS


@dataclass
class SearchResult:
    people: list[PersonSummary]
    matches: int            # all matches, of which `people` is the page asked for


def parse_search(text: str) -> tuple[str, str, str]:
    """(q, key, value): 'plan=free' searches the property plan for free, anything else an id
    or a part of an email."""
    text = text.strip()
    if len(text) > MAX_QUERY:
        raise ValueError(f"the search has {len(text)} characters, more than {MAX_QUERY}")
    key, eq, value = text.partition("=")
    if eq and key.strip():
        return "", key.strip(), value.strip()
    return text, "", ""


def search(client, database: str, app: str, text: str = "", limit: int = 25, offset: int = 0) -> SearchResult:
    q, key, value = parse_search(text)
    def page(limit: int, offset: int) -> list:
        return client.query(query_template("people_search", database), parameters={
            "app": app, "q": q, "key": key, "value": value, "limit": limit, "offset": offset}).result_rows
    rows = page(limit, offset)
    counted = rows or (offset and page(1, 0))  # past the last page: the number of matches all the same
    return SearchResult([PersonSummary(p, list(ids), email, json.loads(props)) for p, ids, email, props, _ in rows],
                        counted[0][4] if counted else 0)


def person(client, database: str, app: str, distinct_id: str) -> PersonPage | None:
    """The person `distinct_id` resolves to (any of their ids works), or None if unknown."""
    rows = client.query(query_template("person_profile", database),
                        parameters={"app": app, "id": distinct_id}).result_rows
    if not rows:
        return None
    who, ids, props, updated = rows[0]
    segments = client.query(query_template("person_segments", database),
                            parameters={"app": app, "person": who}).result_rows
    events = client.query(query_template("person_recent_events", database), parameters={
        "app": app, "ids": list(ids), "limit": RECENT_EVENTS}).result_rows
    return PersonPage(who, list(ids), json.loads(props), updated if updated and updated.year > 1970 else None,
                      [(s, since) for s, since in segments],
                      [PersonEvent(ts, e, k, d, json.loads(data or "{}")) for ts, e, k, d, data in events])
