"""Funnels and metrics saved from the dashboard to the app's definitions (the
saved_definitions table): read beside tracktor.yaml's by the API, the dashboard and
`report`. A name tracktor.yaml defines cannot be saved over (the file stays the truth for
what it says)."""
from __future__ import annotations

import json
import logging
import time

from tracktor.analytics.report import NotFound
from tracktor.config import App, funnel_from, metric_from
from tracktor.warehouse import query_template

log = logging.getLogger(__name__)
KINDS = {"funnel": funnel_from, "metric": metric_from}
MAX_NAME = 100
MAX_SAVED = 200   # per app and kind


def load(client, database: str, app: str) -> dict[str, dict[str, dict]]:
    """{"funnel": {name: definition}, "metric": {...}} of the app's saved definitions."""
    saved: dict[str, dict[str, dict]] = {kind: {} for kind in KINDS}
    for kind, name, text in client.query(query_template("saved_definitions", database),
                                         parameters={"app": app}).result_rows:
        if kind in saved:
            saved[kind][name] = json.loads(text)
    return saved


def merged(app: App, kept: dict[str, dict[str, dict]]) -> dict[str, list]:
    """{"metric": [...], "funnel": [...]}: the app's definitions, tracktor.yaml's first, then
    the saved ones of `kept` (load()) as models; a saved one that no longer reads (a rule
    tightened since it was saved) is left out and logged, not an error for the whole app."""
    out = {}
    for kind, build in KINDS.items():
        defined = _configured(app, kind)
        out[kind] = list(defined.values())
        for name, definition in kept[kind].items():
            if name in defined:
                continue
            try:
                out[kind].append(build(name, definition))
            except ValueError as e:
                log.warning("app %s: the saved %s %r no longer reads: %s", app.sid, kind, name, e)
    return out


def _configured(app: App, kind: str) -> dict:
    return app.funnels if kind == "funnel" else app.metrics


def save(client, database: str, app: App, kind: str, name: str, definition: dict | None) -> None:
    """Saves (or with None deletes) a definition; ValueError says what is wrong with it,
    NotFound that there is none to delete."""
    if kind not in KINDS:
        raise ValueError(f"kind must be funnel or metric, got {kind!r}")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or not name.isprintable() \
            or name in (".", ".."):
        raise ValueError(f"a name is 1..{MAX_NAME} printable characters (not '.' or '..')")
    if definition is None:
        if name not in load(client, database, app.sid)[kind]:
            raise NotFound(f"app {app.sid} has no saved {kind} {name!r}")
    elif name in _configured(app, kind):
        raise ValueError(f"{kind} {name!r} is defined in tracktor.yaml: change it there, or save under another name")
    else:
        KINDS[kind](name, definition)  # refuses a bad definition with its key and reason
        saved = load(client, database, app.sid)[kind]
        if name not in saved and len(saved) >= MAX_SAVED:
            raise ValueError(f"app {app.sid} has {MAX_SAVED} saved {kind}s already (the limit)")
    client.command(f"INSERT INTO {database}.saved_definitions (app, kind, name, definition, version, deleted) "
                   "VALUES ({app:String}, {kind:String}, {name:String}, {definition:String}, {version:UInt64}, {deleted:UInt8})",
                   parameters={"app": app.sid, "kind": kind, "name": name, "definition": json.dumps(definition or {}),
                               "version": time.time_ns(), "deleted": int(definition is None)})
