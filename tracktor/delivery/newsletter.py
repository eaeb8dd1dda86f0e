"""Newsletters (`bin/tracktor newsletter send`, POST …/newsletters): one letter to all the
app's people with an email, or to the members of some segments now, read from ClickHouse
and sent through tracktor.actions and `bin/tracktor deliver` like a campaign's letters. Its
statistics are those of campaign `newsletter:NAME` (no campaign may be named so). The
action ids are (app, newsletter, person): sending the same newsletter again reaches only the
people it had not reached (not those it was refused or bounced for). The audience is read
whole and queued before the call returns."""
from __future__ import annotations

import json
import time

import orjson

from tracktor.warehouse.tables import query_template
from udfs.campaigns import Letter
from udfs.letters import render
from udfs.workflows import action_id

BLOCK = "letter"


def audience(client, database: str, app: str, segments: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
    """(person_id, properties) of everyone with an email, or of the members of any of `segments`."""
    rows = client.query(query_template("newsletter_audience", database), parameters={"app": app}).result_rows
    if segments:
        members = set()
        for seg in segments:
            members |= {r[0] for r in client.query(query_template("segment_member_ids", database),
                                                   parameters={"app": app, "segment": seg}).result_rows}
        rows = [r for r in rows if r[0] in members]
    return [(person, json.loads(props or "{}")) for person, props in rows]


def requests(app: str, name: str, letter: Letter, people: list[tuple[str, dict]], now: int) -> list[dict]:
    campaign = f"newsletter:{name}"
    out = []
    for person, props in people:
        values = {**props, "person_id": person}
        email = props.get("email")
        out.append({"action_id": action_id(app, campaign, person, 1, BLOCK), "app": app, "campaign": campaign,
                    "block": BLOCK, "kind": "letter", "person_id": person, "ts": now, "entry": 1,
                    "letter": {"name": name, "to": email if isinstance(email, str) else None,
                               "subject": render(letter.subject, values),
                               "html": render(letter.body, values, as_html=True)}})
    return out


def send(cfg, client, app: str, name: str, subject: str, body: str, segments: tuple[str, ...] = ()) -> int:
    """Queue the newsletter for its audience; how many letters. ValueError for a wrong
    letter, RuntimeError when Kafka does not take them."""
    from tracktor.control import known_app, producer_for

    known_app(cfg, app)
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        raise ValueError("a newsletter's name is 1-200 characters")
    try:
        letter = Letter(subject=subject, body=body, name=name)
    except ValueError as e:
        raise ValueError(f"newsletter {name!r}: {e}") from None
    batch = requests(app, name, letter, audience(client, cfg.clickhouse.database, app, tuple(segments)),
                     int(time.time() * 1000))
    producer = producer_for(cfg)
    failures = []
    for r in batch:
        while True:
            try:
                producer.produce(cfg.topics["actions"], orjson.dumps(r), f"{app}:{r['person_id']}".encode(),
                                 on_delivery=lambda err, _m: err and failures.append(str(err)))
                break
            except BufferError:  # the local queue is full: let Kafka take some first
                producer.poll(1)
        producer.poll(0)
    if producer.flush(60) or failures:
        raise RuntimeError(f"Kafka did not take the newsletter: {failures[:3] or 'timed out'}")
    return len(batch)
