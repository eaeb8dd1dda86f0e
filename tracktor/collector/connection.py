"""One client connection of the collector: requests read in order, answered one at a time.

It defends itself (values in collector: of the config, docs/limits.md):
- a request's head must arrive within `head_timeout` of its first byte and its body within
  `body_timeout` of the head, else 408 and the connection closes (a client that sends half a
  request line and then nothing is not held open);
- a kept-alive connection with no request for `idle_timeout` is closed;
- at most `max_connections` connections: the one past that gets 503 and is closed;
- while a request waits for Kafka it reads on only until `max_buffered_bytes` are waiting,
  and it stops reading while the client does not read its answers (write back-pressure);
- every request it cannot serve gets a 4xx saying why (wire.py), and a fault of its own a
  500 without internal details: never a dropped connection.
"""
from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections import namedtuple
from urllib.parse import urlsplit

import orjson

from tracktor.collector.calls import CallError, loads, query_params, serialized
from tracktor.collector.wire import Request, WireError, parse_head, response
from tracktor.dev import envelopes
from udfs.campaigns import LETTER_CLICKED, LETTER_OPENED
from udfs.letters import token_app, verify

log = logging.getLogger(__name__)
GET_METHODS = {"/track": "track", "/set": "set", "/alias": "alias"}
SCRIPT_PATH = re.compile(r"/scripts/([A-Za-z0-9_.-]{1,64})\.js")
MAX_QUERY_BYTES = 16 * 1024
TRACKING_PATHS = ("/o/", "/c/")  # letters' open pixel and links (udfs/letters.py)
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
PREFLIGHT = (("Access-Control-Allow-Methods", "GET, POST, OPTIONS"), ("Access-Control-Allow-Headers", "Content-Type"))
_Target = namedtuple("_Target", "path query")


def _target(target: str) -> _Target:
    """Path and query of a request target; urlsplit only for the rare absolute form."""
    if target.startswith("/"):
        path, _, query = target.partition("?")
        return _Target(path, query.partition("#")[0])
    parts = urlsplit(target)
    return _Target(parts.path, parts.query)


class Connection(asyncio.Protocol):
    def __init__(self, collector):
        self.c = collector
        self.limits = collector.limits
        self.buffer = bytearray()
        self.busy = False           # a request is being answered (waiting for Kafka)
        self.closed = False
        self.transport = None
        self.reading = True
        self.writable = True
        self.deadline: float | None = None  # when the request being read must be complete
        self.body_clock = False             # the deadline is the body's (its head has come)
        self.eof = False                    # the client will send nothing more
        self.idle_since = time.monotonic()

    # -- connection events -------------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        if len(self.c.connections) >= self.limits.max_connections:
            self.closed = True
            transport.write(response(503, orjson.dumps({"error": f"more than {self.limits.max_connections} "
                                                                 "connections: retry later"}),
                                     keep_alive=False, extra=(("Retry-After", "1"),)))
            transport.close()
            return
        self.c.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc):
        self.closed = True
        self.c.connections.discard(self)

    def data_received(self, data: bytes):
        if self.closed:
            return
        if not self.buffer and not self.busy:
            self._start_clock()
        self.buffer += data
        if self.busy and len(self.buffer) > self.limits.max_buffered_bytes:
            self._pause()  # read on once the request in flight is answered
        self._next()

    def eof_received(self):
        """The client closed its side: answer what it sent (an unfinished request gets a 400
        saying so), then close."""
        self.eof = True
        if self.busy:
            return True  # the answer to the request in flight is still to be written
        if self.buffer:
            self._next()
            if self.buffer and not self.closed and not self.busy:
                self._send(response(400, orjson.dumps({"error": "the request ended before it was complete"}),
                                    keep_alive=False), False)
            return True
        return None

    def pause_writing(self):
        self.writable = False
        self._pause()

    def resume_writing(self):
        self.writable = True
        self._resume()

    def _pause(self):
        if self.reading and not self.closed:
            self.reading = False
            self.transport.pause_reading()

    def _resume(self):
        if not self.reading and not self.closed and self.writable and \
                (not self.busy or len(self.buffer) <= self.limits.max_buffered_bytes):
            self.reading = True
            self.transport.resume_reading()
            if self.buffer and not self.busy:
                self._start_clock()

    def _start_clock(self):
        """A request has started to arrive: its head has head_timeout."""
        self.deadline = time.monotonic() + self.limits.head_timeout
        self.body_clock = False

    def abort(self):
        self.closed = True
        self.transport.abort()

    def check_deadline(self, now: float) -> None:
        """Called by the collector's sweep: 408 for a request that is too slow to arrive,
        a quiet close for a connection idle too long."""
        if self.closed or self.busy or not self.reading:
            return  # waiting for Kafka, or for the client to read: not the client's delay
        if self.buffer and self.deadline is not None and now > self.deadline:
            self._send(response(408, orjson.dumps({"error": "the request did not arrive in time"}), keep_alive=False),
                       False)
        elif not self.buffer and now - self.idle_since > self.limits.idle_timeout:
            self.closed = True
            self.transport.close()

    # -- the request loop ------------------------------------------------------------------
    def _next(self) -> None:
        while not self.busy and not self.closed and self.buffer:
            try:
                parsed = parse_head(self.buffer, MAX_QUERY_BYTES, self.limits.max_body_bytes)
            except WireError as e:
                return self._send(response(e.status, orjson.dumps({"error": e.reason}), keep_alive=False), False)
            if parsed is None:
                return
            req, size = parsed
            if len(self.buffer) < size:  # the body is still coming: it has a deadline of its own
                if not self.body_clock:
                    self.deadline, self.body_clock = time.monotonic() + self.limits.body_timeout, True
                return
            head = size - req.body_length
            req.body = bytes(self.buffer[head:size])
            del self.buffer[:size]
            self.busy, self.deadline = True, None
            try:
                self._handle(req)
            except Exception:  # noqa: BLE001 - a fault of ours: answered, logged, never a dropped connection
                log.exception("request %s %s failed", req.method, req.target[:200])
                self._reply(req, 500, {"error": "internal error"}, keep_alive=False)

    def _send(self, data: bytes, keep_alive: bool) -> None:
        if self.closed:
            return
        self.transport.write(data)
        if not keep_alive:
            self.closed = True
            self.transport.close()
            return
        self.busy = False
        self.idle_since = time.monotonic()
        if self.buffer:
            self._start_clock()  # the next request, pipelined, has started already
        self._resume()
        self._next()
        if self.eof and not self.busy and not self.closed:
            if self.buffer:
                self._send(response(400, orjson.dumps({"error": "the request ended before it was complete"}),
                                    keep_alive=False), False)
            else:
                self.closed = True
                self.transport.close()

    def _reply(self, req: Request, status: int, body, content_type: str = "application/json", extra=(),
               keep_alive: bool | None = None) -> None:
        data = orjson.dumps(body) if isinstance(body, dict) else body
        keep = req.keep_alive if keep_alive is None else keep_alive
        self._send(response(status, data, content_type, keep, extra), keep)

    # -- routes ----------------------------------------------------------------------------
    def _handle(self, req: Request) -> None:
        url = _target(req.target)
        script = url.path.startswith("/scripts/") and url.path.endswith(".js")
        if url.path == "/batch":
            allowed = "POST"
        elif url.path in GET_METHODS or url.path in ("/health", "/openapi.yaml") or script or \
                url.path.startswith(TRACKING_PATHS):
            allowed = "GET"
        else:
            return self._reply(req, 404, {"error": f"no such endpoint {url.path[:200]!r}"})
        if req.method == "OPTIONS":  # CORS preflight for browsers posting JSON to /batch
            return self._send(response(204, b"", keep_alive=req.keep_alive, extra=PREFLIGHT), req.keep_alive)
        if req.method != allowed:
            return self._reply(req, 405, {"error": f"{url.path[:200]} takes {allowed}, not {req.method[:20]}"},
                               extra=(("Allow", f"{allowed}, OPTIONS"),))
        if allowed == "POST":
            return self._batch(req, url.query)
        if url.path in GET_METHODS:
            return self._accept(req, [(GET_METHODS[url.path], query_params(url.query))])
        if url.path.startswith(TRACKING_PATHS):
            return self._tracking(req, url.path)
        if url.path == "/health":
            return self._reply(req, 200, {"ok": True})
        if url.path == "/openapi.yaml":
            return self._reply(req, 200, self.c.openapi, "application/yaml")
        sid = SCRIPT_PATH.fullmatch(url.path)
        text = sid and self.c.script(sid.group(1), req.headers.get("host"))
        if not text:
            name = url.path[len("/scripts/"):-len(".js")][:64].replace("*/", "")
            return self._reply(req, 404, f"/* tracktor: no app {name!r} */\n".encode(), "application/javascript")
        return self._reply(req, 200, text.encode(), "application/javascript; charset=utf-8")

    def _batch(self, req: Request, query: str) -> None:
        try:
            calls = loads(req.body or b"null")
        except RecursionError:
            return self._reply(req, 400, {"error": "body nests too deep"})
        except ValueError as e:
            return self._reply(req, 400, {"error": f"body is not JSON: {e}"})
        if not isinstance(calls, list) or not calls or not all(isinstance(c, dict) for c in calls):
            return self._reply(req, 400, {"error": "body must be a non-empty JSON array of call objects"})
        if len(calls) > self.limits.max_batch_calls:
            return self._reply(req, 413, {"error": f"more than {self.limits.max_batch_calls} calls in one batch"})
        default_sid = query_params(query).get("sid")
        prepared = []
        for c in calls:
            params = dict(c)
            params.setdefault("sid", default_sid)
            method = params.pop("method", "")
            prepared.append((method if isinstance(method, str) else "", params))
        self._accept(req, prepared)

    def _accept(self, req: Request, calls: list[tuple[str, dict]]) -> None:
        try:
            envs = self.c.envelopes(calls)
        except CallError as e:
            return self._reply(req, e.status, {"error": e.reason})
        self._produce(req, envs, lambda: self._reply(req, 200, {"accepted": len(envs)}))

    def _tracking(self, req: Request, path: str) -> None:
        """A letter's open pixel (/o/TOKEN) or link (/c/TOKEN): the signed token names the
        app, the person and the letter (udfs/letters.py); the event goes to tracktor.raw as
        the person's, then the pixel or a redirect to the link's address is the answer."""
        opened = path.startswith("/o/")
        try:
            token = path[3:]
            app = self.c.apps.get(token_app(token))
            if app is None:
                return self._reply(req, 404, {"error": "the link's app is not served here"})
            fields = verify(app.secret, token)
        except ValueError as e:
            return self._reply(req, 403 if "signature" in str(e) else 400, {"error": str(e)})
        if opened == ("u" in fields):
            return self._reply(req, 400, {"error": "an open pixel's token on /c/, or a link's on /o/"})
        now = int(time.time() * 1000)
        data = {"campaign": fields["c"], "letter": fields["l"], "action_id": fields["id"]}
        env = envelopes.track(app.sid, fields["p"], LETTER_OPENED if opened else LETTER_CLICKED, now,
                              data if opened else {**data, "url": fields["u"]})
        if opened:
            answer = lambda: self._reply(req, 200, PIXEL, "image/gif", (("Cache-Control", "no-store"),))  # noqa: E731
        else:
            answer = lambda: self._reply(req, 302, b"", "text/plain", (("Location", fields["u"]),))  # noqa: E731
        self._produce(req, [(env, serialized(env))], answer)

    def _produce(self, req: Request, envs: list, answer) -> None:
        """Hand the envelopes to Kafka; `answer()` once Kafka has them all, else a 503."""
        answered = []

        def done(error):
            if answered:
                return
            answered.append(True)
            timer.cancel()
            if error is None:
                try:
                    return answer()
                except Exception:  # noqa: BLE001 - a fault of ours: answered, logged, never a dropped connection
                    log.exception("answering %s %s failed", req.method, req.target[:200])
                    return self._reply(req, 500, {"error": "internal error"}, keep_alive=False)
            log.warning("Kafka did not take %d envelopes: %s", len(envs), error)
            self._reply(req, 503, {"error": "Kafka is unavailable, retry later"}, extra=(("Retry-After", "1"),))

        # librdkafka fails a record after message.timeout.ms; this only guards against a report that never comes
        timer = self.c.loop.call_later(self.c.kafka_timeout_s * 2 + 1, done, "no answer from Kafka")
        self.c.produce(envs, done)
