"""The analytics HTTP API and the dashboard pages: funnels, metrics, segments and people, as
JSON (or a metric's or funnel's chart as HTML), and the single-page dashboard that reads them.

  GET  /                                         the dashboard (tracktor/analytics/static/, docs/dashboard.md)
  GET  /api/v1/apps/{app}                        the app's funnels, metrics (saved ones too) and segments
  GET  /api/v1/apps/{app}/dashboard              every metric and funnel, and each segment's member count
  GET  /api/v1/apps/{app}/funnels/{name}         steps; ?step=N[&dropped=true][&limit=L][&offset=O] for the people
  GET  /api/v1/apps/{app}/metrics/{name}         the daily series, max/min/avg, people
  POST /api/v1/apps/{app}/funnels                an ad hoc funnel: body {"definition": {...}} or
                                                 {"definition_yaml": "steps: [...]"}, and an optional "name"
  POST /api/v1/apps/{app}/metrics                an ad hoc metric, the same way
  GET  /api/v1/apps/{app}/segments               each segment: members now and per day
  GET  /api/v1/apps/{app}/segments/{name}        members per day, and the members (id, email, properties)
  GET  /api/v1/apps/{app}/people                 ?q=ID, part of an email, or key=value; ?limit=&offset=
  GET  /api/v1/apps/{app}/people/{id}            the person (any of their ids): ids, properties, segments, events
                                                 (also .../people?id=ID, for ids a path cannot carry)
  POST /api/v1/apps/{app}/segments               {"definitions": {name: definition or null}}: change segments live
  GET  /api/v1/apps/{app}/campaigns/{name}       a campaign's entries per block, letters sent / opened / bounced /
                                                 clicked, and each recipient's letter activity (newsletter:NAME too)
  POST /api/v1/apps/{app}/campaigns              {"definitions": {name: definition or null}}: change campaigns live
  POST /api/v1/apps/{app}/newsletters            {"name", "subject", "body", "segments": [...]}: send a newsletter
  POST /api/v1/apps/{app}/definitions            {"kind": "funnel"|"metric", "name", "definition"|"definition_yaml"}:
                                                 save to the app's definitions (null definition: delete)
  DELETE /api/v1/apps/{app}/people/{id}          delete the person with this id, all their ids and data
  GET  /health

Every question takes ?range=today|last-7-days|last-30-days|last-90-days or ?from=YYYY-MM-DD&to=…
(at most api.max_range_days days) and ?format=json (default) or html (a chart). Each app's
data needs that app's read token, `Authorization: Bearer <apps[].read_token>` (compared in
constant time): not its signing secret, so a dashboard user cannot forge signed calls, and
one app never reads another's. Changes (POST .../segments, .../campaigns, .../newsletters, .../definitions, DELETE
.../people/{id}) need the app's admin token, `apps[].admin_token`, the same way; an app
without one takes no changes. Answers come from tracktor/analytics/report.py, like the
command line's.

Bounded: api.threads requests are served at once (the rest wait their turn), a client has
api.request_timeout to send its request, and a query runs at most api.query_timeout. A fault
of the server's own is a 500 that says only "internal error" (the details go to the log).
"""
from __future__ import annotations

import hmac
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from tracktor import warehouse
from tracktor.analytics import pages, people, queries as analytics, report, saved
from tracktor.config import Config
from udfs.limits import MAX_ID_LENGTH, check_json
from udfs.segment_rules import MAX_DEFINITION_DEPTH

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _PooledServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with its requests on a fixed pool of threads instead of one thread each."""

    daemon_threads = True

    def __init__(self, address, handler, threads: int):
        super().__init__(address, handler)
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="api")

    def process_request(self, request, client_address):
        self.pool.submit(self.process_request_thread, request, client_address)

    def server_close(self):
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)


class Api:
    def __init__(self, cfg: Config, host: str | None = None, port: int | None = None):
        self.cfg = cfg
        self.apps = cfg.apps
        self.database = cfg.clickhouse.database
        self.server = _PooledServer((host or cfg.api.host, cfg.api.port if port is None else port), _handler(self),
                                    cfg.api.threads)
        self.client = None
        self.lock = threading.Lock()

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "Api":
        threading.Thread(target=self.server.serve_forever, name="api", daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.client is not None:
            self.client.close()

    def warehouse(self):
        with self.lock:
            if self.client is None:
                self.client = warehouse.connect(self.cfg.clickhouse)
                warehouse.migrate(self.client, self.database)
            return self.client

    # -- requests --------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, headers, body: bytes | None) -> tuple[int, str, str]:
        """(status, content type, text) for one request."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if method == "GET" and (parts in ([""], ["index.html"]) or parts[0] == "static"):
            page = pages.page(parts)
            if page is None:
                raise ApiError(404, f"no such page {path[:200]}")
            return page
        if parts == ["health"]:
            return 200, "application/json", '{"ok": true}'
        if len(parts) < 4 or parts[:3] != ["api", "v1", "apps"]:
            raise ApiError(404, f"no such resource {path[:200]}")
        app, rest = parts[3], parts[4:]
        changes = method in ("DELETE", "POST") and rest[:1] in (["people"], ["segments"], ["definitions"],
                                                                 ["campaigns"], ["newsletters"])
        self._authorise(app, headers.get("Authorization", ""), "admin_token" if changes else "read_token")
        if not rest and method == "GET":
            return self._app(app)
        what = rest[0] if rest else ""
        if what == "people":
            return self._delete_person(app, parts, method) if method == "DELETE" else self._people(app, rest, query, method)
        if what == "dashboard" and len(rest) == 1 and method == "GET":
            return self._dashboard(app, query)
        if what == "definitions":
            return self._save_definition(app, rest, method, body)
        if what in ("segments", "campaigns") and method == "POST":
            return self._apply(app, parts, body, what[:-1])
        if what == "newsletters":
            return self._newsletter(app, parts, method, body)
        if what == "segments" and len(rest) == 1 and method == "GET":
            return self._segments(app, query)
        if len(rest) not in (1, 2) or what not in ("funnels", "metrics", "segments", "campaigns"):
            raise ApiError(404, f"no such resource {path[:200]}")
        if method == "DELETE":
            raise ApiError(405, f"DELETE is for .../people/{{id}}; {what} are read with GET")
        kind = what[:-1]
        name, definition = (rest[1] if len(rest) == 2 else None), None
        if method == "POST":
            if name is not None:
                raise ApiError(405, "POST an ad hoc definition to .../funnels or .../metrics")
            body_json = _json_body(body)
            definition, name = _definition(body_json), body_json.get("name", "ad hoc")
        elif name is None:
            raise ApiError(404, f"GET .../{what}/NAME")
        fmt = _one(query, "format", "json")
        if fmt not in ("json", "html"):
            raise ApiError(400, "format must be json or html")
        with self._answering():
            q = report.ask(self.cfg, app, kind, name, definition, _one(query, "range", "last-7-days"),
                           _day(query, "from"), _day(query, "to"), _int(query, "step"),
                           _one(query, "dropped", "false") == "true", _int(query, "limit", 100),
                           _int(query, "offset", 0), saved=self._saved(app) if name and not definition else None)
            self._check_range(q.first, q.last)
            text = report.render(q, report.answer(self.warehouse(), self.database, q, settings=self.settings), fmt)
        return 200, ("text/html; charset=utf-8" if fmt == "html" else "application/json"), text

    @property
    def settings(self) -> dict:
        return {"max_execution_time": self.cfg.api.query_timeout}

    @contextmanager
    def _answering(self):
        """report's NotFound and ValueError as the 404 and 400 they are."""
        try:
            yield
        except report.NotFound as e:
            raise ApiError(404, str(e)) from None
        except ValueError as e:
            raise ApiError(400, str(e)) from None

    def _check_range(self, first: date, last: date) -> None:
        days = (last - first).days + 1
        if days > self.cfg.api.max_range_days:
            raise ApiError(400, f"the range has {days} days, more than api.max_range_days ({self.cfg.api.max_range_days})")

    def _range(self, query: dict) -> tuple[date, date]:
        with self._answering():
            first, last = analytics.date_range(_one(query, "range", "last-7-days"), _day(query, "from"), _day(query, "to"))
        self._check_range(first, last)
        return first, last

    def _saved(self, app: str) -> dict:
        return saved.load(report.with_settings(self.warehouse(), self.settings), self.database, app)

    def _app(self, app: str) -> tuple[int, str, str]:
        a, kept = self.apps[app], self._saved(app)
        both = saved.merged(a, kept)
        return 200, "application/json", json.dumps({
            "app": app, "name": a.name,
            "funnels": {f.name: list(f.events) for f in both["funnel"]},
            "windows": {f.name: f.window_seconds for f in both["funnel"]},   # seconds, null: the whole range
            "metrics": {m.name: m.model_dump(exclude={"name"}, exclude_none=True) for m in both["metric"]},
            "saved": {kind: sorted(names) for kind, names in kept.items()},
            "segments": a.segments}, default=str)

    def _dashboard(self, app: str, query: dict) -> tuple[int, str, str]:
        """Every metric and funnel of the app (configured, then saved) over the range, and the
        member count of each segment: one request for the whole dashboard, polled by the page."""
        first, last = self._range(query)
        client = report.with_settings(self.warehouse(), self.settings)
        kept, a = saved.load(client, self.database, app), self.apps[app]
        both = saved.merged(a, kept)
        metrics, funnels = both["metric"], both["funnel"]
        segments = analytics.segment_names(client, self.database, app, a.segments)
        return 200, "application/json", json.dumps({
            "app": app, "name": a.name, "first": first, "last": last,
            "metrics": [{**asdict(analytics.metric(client, self.database, app, m, first, last)),
                         "saved": m.name in kept["metric"] and m.name not in a.metrics} for m in metrics],
            "funnels": [{"name": f.name, "steps": [asdict(s) for s in analytics.funnel(client, self.database, app, f, first, last)],
                         "window_seconds": f.window_seconds} for f in funnels],
            "segments": [{"name": n, "count": analytics.segment_count(client, self.database, app, n)}
                         for n in segments]}, default=str)

    def _segments(self, app: str, query: dict) -> tuple[int, str, str]:
        first, last = self._range(query)
        client = report.with_settings(self.warehouse(), self.settings)
        out = []
        for name in analytics.segment_names(client, self.database, app, self.apps[app].segments):
            seg = analytics.segment(client, self.database, app, name, first, last, limit=1)
            out.append({"name": name, "count": seg.count, "days": seg.days,
                        "defined": name in self.apps[app].segments})
        return 200, "application/json", json.dumps({"first": first, "last": last, "segments": out}, default=str)

    def _people(self, app: str, rest: list, query: dict, method: str) -> tuple[int, str, str]:
        if method != "GET" or len(rest) > 2:
            raise ApiError(405 if len(rest) <= 2 else 404, "GET .../people[?q=…] or .../people/{id}")
        client = report.with_settings(self.warehouse(), self.settings)
        # one person: .../people/{id}, or .../people?id= for any id (a path cannot carry "." or "..")
        one = rest[1] if len(rest) == 2 else _one(query, "id")
        if one is not None:
            if not one or len(one) > MAX_ID_LENGTH:
                raise ApiError(400, f"an id is 1..{MAX_ID_LENGTH} characters")
            page = people.person(client, self.database, app, one)
            if page is None:
                raise ApiError(404, f"app {app} has no person with the id {one[:200]!r}")
            return 200, "application/json", json.dumps(asdict(page), default=str)
        limit, offset = _int(query, "limit", 25), _int(query, "offset", 0)
        if not 1 <= limit <= 1000 or not 0 <= offset <= 1_000_000:
            raise ApiError(400, "limit must be 1..1000 and offset 0..1000000")
        with self._answering():
            found = people.search(client, self.database, app, _one(query, "q", ""), limit, offset)
        return 200, "application/json", json.dumps(asdict(found), default=str)

    def _save_definition(self, app: str, rest: list, method: str, body: bytes | None) -> tuple[int, str, str]:
        """POST .../definitions: a funnel or metric saved to the app's definitions (saved.py)."""
        if method != "POST" or len(rest) != 1:
            raise ApiError(405, "POST {kind, name, definition} to .../definitions")
        data = _json_body(body)
        definition = None if "definition" in data and data["definition"] is None else _definition(data)
        with self._answering():
            saved.save(self.warehouse(), self.database, self.apps[app], data.get("kind"), data.get("name"), definition)
        return (201 if definition is not None else 200), "application/json", json.dumps(
            {"saved" if definition is not None else "deleted": data.get("name"), "kind": data.get("kind")})

    def _apply(self, app: str, parts: list, body: bytes | None, kind: str) -> tuple[int, str, str]:
        """POST .../segments or .../campaigns {"definitions": {name: definition, or null to
        delete}}: the changes go to tracktor.control, where segment_eval or workflow_runner
        takes them in while it runs."""
        from tracktor import control
        if len(parts) != 5:
            raise ApiError(405, f"POST {kind} definitions to .../{kind}s")
        definitions = _json_body(body).get("definitions")
        if not isinstance(definitions, dict) or not definitions:
            raise ApiError(400, "the body needs 'definitions': {name: definition or null}")
        try:
            names = control.publish(self.cfg, app, kind, definitions)
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        except RuntimeError as e:  # no broker, or it did not take them
            raise ApiError(503, f"the change could not be published: {e}") from None
        return 202, "application/json", json.dumps({"applied": names})

    def _newsletter(self, app: str, parts: list, method: str, body: bytes | None) -> tuple[int, str, str]:
        """POST .../newsletters {"name", "subject", "body", optional "segments": [...]}: the
        letters go to tracktor.actions for `bin/tracktor deliver` (tracktor/delivery/newsletter.py)."""
        from tracktor.delivery import newsletter
        if len(parts) != 5 or method != "POST":
            raise ApiError(405, "POST a newsletter to .../newsletters; its statistics: GET .../campaigns/newsletter:NAME")
        data = _json_body(body)
        segments = data.get("segments") or []
        if not isinstance(segments, list) or not all(isinstance(x, str) for x in segments) or len(segments) > 100:
            raise ApiError(400, "segments must be a list of at most 100 segment names")
        for key in ("name", "subject", "body"):
            if not isinstance(data.get(key), str):
                raise ApiError(400, f"the body needs {key!r}, a string")
        try:
            n = newsletter.send(self.cfg, self.warehouse(), app, data["name"], data["subject"], data["body"],
                                tuple(segments))
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        except RuntimeError as e:
            raise ApiError(503, f"the newsletter could not be queued: {e}") from None
        return 202, "application/json", json.dumps({"queued": n, "campaign": f"newsletter:{data['name']}"})

    def _delete_person(self, app: str, parts: list, method: str) -> tuple[int, str, str]:
        """DELETE .../people/{id}: a delete call on tracktor.raw, which identity_merge and the
        jobs after it carry out (docs/privacy.md)."""
        from tracktor import control
        if len(parts) != 6 or method != "DELETE":
            raise ApiError(405 if len(parts) == 6 else 404, "DELETE .../people/{id}")
        try:
            control.delete_person(self.cfg, app, parts[5])
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        except RuntimeError as e:
            raise ApiError(503, f"the deletion could not be published: {e}") from None
        return 202, "application/json", json.dumps({"deleting": parts[5]})

    def _authorise(self, app: str, header: str, kind: str) -> None:
        """The app's `kind` token ("read_token", "admin_token") in a Bearer header, or ApiError."""
        if app not in self.apps:
            raise ApiError(404, f"no app {app[:100]!r}")
        expected = getattr(self.apps[app], kind)
        if not expected:
            doing = "its analytics cannot be read" if kind == "read_token" else "it takes no changes through the API"
            raise ApiError(403, f"app {app!r} has no {kind} in the configuration: {doing}")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, f"send the app's {kind.replace('_', ' ')} as 'Authorization: Bearer <{kind}>'")
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise ApiError(403, f"wrong {kind.replace('_', ' ')} for app {app!r}")


def _one(query: dict, key: str, default: str | None = None) -> str | None:
    values = query.get(key)
    if not values:
        return default
    if len(values) > 1:
        raise ApiError(400, f"parameter {key!r} given {len(values)} times")
    return values[0]


def _day(query: dict, key: str) -> date | None:
    text = _one(query, key)
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        raise ApiError(400, f"parameter {key!r}: expected YYYY-MM-DD, got {text!r}") from None


def _int(query: dict, key: str, default: int | None = None) -> int | None:
    text = _one(query, key)
    try:
        return int(text) if text else default
    except ValueError:
        raise ApiError(400, f"parameter {key!r}: expected a whole number, got {text!r}") from None


class _NoAliases(yaml.SafeLoader):
    """YAML without anchors and aliases: a few hundred bytes of nested aliases expand to
    gigabytes once the definition is written out as JSON ("billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not taken here",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


MAX_DEFINITION_VALUES = 10_000  # values in one ad hoc or saved definition (its depth: segments' MAX_DEFINITION_DEPTH)


def _definition(body: dict) -> dict:
    """The body's "definition" object, or its "definition_yaml" text (as in tracktor.yaml) read as one."""
    if "definition_yaml" in body:
        text = body["definition_yaml"]
        if not isinstance(text, str):
            raise ApiError(400, "'definition_yaml' must be a string")
        try:
            definition = yaml.load(text, Loader=_NoAliases)  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as e:
            raise ApiError(400, f"'definition_yaml' is not YAML we take: {str(e)[:300]}") from None
        except RecursionError:
            raise ApiError(400, "'definition_yaml' nests too deeply") from None
    else:
        definition = body.get("definition")
    if not isinstance(definition, dict):
        raise ApiError(400, "the body needs a 'definition' object (or 'definition_yaml', a YAML mapping)")
    try:
        check_json(definition, "the definition", MAX_DEFINITION_DEPTH, MAX_DEFINITION_VALUES)
    except ValueError as e:
        raise ApiError(400, str(e)) from None
    return definition


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _json_body(body: bytes | None) -> dict:
    try:
        data = json.loads(body or b"", parse_constant=_no_constant)
    except ValueError as e:
        raise ApiError(400, f"the body is not JSON: {e}") from None
    except RecursionError:
        raise ApiError(400, "the body nests too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def _handler(api: Api):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = api.cfg.api.request_timeout  # a client that sends nothing does not hold a thread

        def log_message(self, fmt, *args):
            log.debug("%s " + fmt, self.address_string(), *args)

        def do_GET(self):
            self._serve("GET", None)

        def do_DELETE(self):
            self._serve("DELETE", None)

        def _not_allowed(self):
            self.close_connection = True  # a body it may have sent is not read
            self._send(405, "application/json", json.dumps({"error": f"method {self.command} is not allowed: "
                                                                       "GET, POST or DELETE"}))

        do_PUT = do_PATCH = do_HEAD = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

        def do_POST(self):
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit() or int(length) > MAX_BODY_BYTES:
                self.close_connection = True  # its body, if any, is not read
                if length is None:
                    return self._send(411, "application/json", json.dumps({"error": "Content-Length required"}))
                if not length.isdigit():
                    return self._send(400, "application/json", json.dumps({"error": "Content-Length is not a number"}))
                return self._send(413, "application/json", json.dumps({"error": f"body over {MAX_BODY_BYTES} bytes"}))
            self._serve("POST", self.rfile.read(int(length)))

        def _serve(self, method, body):
            url = urlsplit(self.path)
            try:
                status, ctype, text = api.handle(method, url.path, parse_qs(url.query, keep_blank_values=True),
                                                 self.headers, body)
            except ApiError as e:
                status, ctype, text = e.status, "application/json", json.dumps({"error": str(e)})
            except Exception:  # noqa: BLE001 - a failing query must not take the server down, nor show its insides
                log.exception("API request %s failed", self.path[:500])
                status, ctype, text = 500, "application/json", json.dumps({"error": "internal error"})
            self._send(status, ctype, text)

        def _send(self, status, ctype, text):
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            if status == 405:
                self.send_header("Allow", "GET, POST, DELETE")
            for header, value in pages.HEADERS.items():
                self.send_header(header, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    return Handler
