"""The analytics HTTP API: funnels, metrics, the drill-down and charts, as JSON or HTML.

  GET  /api/v1/apps/{app}                        the app's defined funnels and metrics
  GET  /api/v1/apps/{app}/funnels/{name}         steps; ?step=N[&dropped=true][&limit=L] for the people
  GET  /api/v1/apps/{app}/metrics/{name}         the daily series, max/min/avg, people
  POST /api/v1/apps/{app}/funnels                an ad hoc funnel: body {"definition": {...}, "name": …}
  POST /api/v1/apps/{app}/metrics                an ad hoc metric, the same way
  GET  /api/v1/apps/{app}/segments/{name}        members per day, and the members (id, email, properties)
  POST /api/v1/apps/{app}/segments               {"definitions": {name: definition or null}}: change segments live
  DELETE /api/v1/apps/{app}/people/{id}          delete the person with this id, all their ids and data
  GET  /health

Every question takes ?range=today|last-7-days|last-30-days|last-90-days or ?from=YYYY-MM-DD&to=…
(at most api.max_range_days days) and ?format=json (default) or html (a chart). Each app's
data needs that app's read token, `Authorization: Bearer <apps[].read_token>` (compared in
constant time): not its signing secret, so a dashboard user cannot forge signed calls, and
one app never reads another's. Changes (POST .../segments, DELETE .../people/{id}) need the
app's admin token, `apps[].admin_token`, the same way; an app without one takes no changes. Answers come from tracktor/analytics/report.py, like the
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
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from tracktor.analytics import report
from tracktor import warehouse
from tracktor.config import Config

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
        if parts == ["health"]:
            return 200, "application/json", '{"ok": true}'
        if len(parts) < 4 or parts[:3] != ["api", "v1", "apps"]:
            raise ApiError(404, f"no such resource {path}")
        app = parts[3]
        changes = method in ("DELETE", "POST") and len(parts) >= 5 and parts[4] in ("people", "segments")
        self._authorise(app, headers.get("Authorization", ""), "admin_token" if changes else "read_token")
        if len(parts) >= 5 and parts[4] == "people":
            return self._delete_person(app, parts, method)
        if len(parts) == 4 and method == "GET":
            a = self.apps[app]
            return 200, "application/json", json.dumps({
                "app": app, "funnels": {n: list(f.events) for n, f in a.funnels.items()},
                "metrics": {n: m.model_dump(exclude={"name"}, exclude_none=True) for n, m in a.metrics.items()},
                "segments": a.segments})
        if len(parts) not in (5, 6) or parts[4] not in ("funnels", "metrics", "segments"):
            raise ApiError(404, f"no such resource {path}")
        if parts[4] == "segments" and method == "POST":
            return self._apply_segments(app, parts, body)
        kind = parts[4][:-1]
        name, definition = (parts[5] if len(parts) == 6 else None), None
        if method == "POST":
            if name is not None:
                raise ApiError(405, "POST an ad hoc definition to .../funnels or .../metrics")
            body_json = _json_body(body)
            definition, name = body_json.get("definition"), body_json.get("name", "ad hoc")
            if not isinstance(definition, dict):
                raise ApiError(400, "the body needs a 'definition' object")
        elif name is None:
            raise ApiError(404, f"GET .../{parts[4]}/NAME")
        fmt = _one(query, "format", "json")
        if fmt not in ("json", "html"):
            raise ApiError(400, "format must be json or html")
        try:
            q = report.ask(self.cfg, app, kind, name, definition, _one(query, "range", "last-7-days"),
                           _day(query, "from"), _day(query, "to"), _int(query, "step"),
                           _one(query, "dropped", "false") == "true", _int(query, "limit") or 100)
            days = (q.last - q.first).days + 1
            if days > self.cfg.api.max_range_days:
                raise ApiError(400, f"the range has {days} days, more than api.max_range_days ({self.cfg.api.max_range_days})")
            text = report.render(q, report.answer(self.warehouse(), self.database, q,
                                                  settings={"max_execution_time": self.cfg.api.query_timeout}), fmt)
        except report.NotFound as e:
            raise ApiError(404, str(e)) from None
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        return 200, ("text/html; charset=utf-8" if fmt == "html" else "application/json"), text

    def _apply_segments(self, app: str, parts: list, body: bytes | None) -> tuple[int, str, str]:
        """POST .../segments {"definitions": {name: definition, or null to delete}}: the
        changes go to tracktor.control, where segment_eval takes them in while it runs."""
        from tracktor import control
        if len(parts) != 5:
            raise ApiError(405, "POST segment definitions to .../segments")
        definitions = _json_body(body).get("definitions")
        if not isinstance(definitions, dict) or not definitions:
            raise ApiError(400, "the body needs 'definitions': {name: definition or null}")
        try:
            names = control.publish_segments(self.cfg, app, definitions)
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        except RuntimeError as e:  # no broker, or it did not take them
            raise ApiError(503, f"the change could not be published: {e}") from None
        return 202, "application/json", json.dumps({"applied": names})

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


def _int(query: dict, key: str) -> int | None:
    text = _one(query, key)
    try:
        return int(text) if text else None
    except ValueError:
        raise ApiError(400, f"parameter {key!r}: expected a whole number, got {text!r}") from None


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

        def do_POST(self):
            length = self.headers.get("Content-Length")
            if length is None:
                return self._send(411, "application/json", json.dumps({"error": "Content-Length required"}))
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
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
            self.end_headers()
            self.wfile.write(data)

    return Handler
