"""The HTTP collector: the seed's tracking API in front of `tracktor.raw`.

  GET  /track  /set  /alias      one call, url-encoded parameters (the seed's HTTP API)
  POST /batch                    a JSON array of calls: {"method": "track"|"set"|"alias"|"identify"
                                 |"setCart"|"cancelCart"|"purchaseCart", "sid": …, other parameters}
  GET  /scripts/<sid>.js         the JavaScript library (tracktor/collector/static/tio.js) set up for the app
  GET  /openapi.yaml             the OpenAPI description of this API (docs/openapi.yaml)
  GET  /health                   200 when serving

200 only after Kafka has every envelope of the request (acks=all); 503 while Kafka is
unavailable (clients retry); 400/401/403/404/411/413 with the reason. The decisions are
in udfs/collector.py.

How it is fast: one asyncio event loop (uvloop) serves every connection, and librdkafka
(confluent-kafka) batches the records of all in-flight requests into few produce requests.
A request never blocks the loop while Kafka acknowledges: the loop reads librdkafka's
delivery reports every millisecond while records are in flight, and they complete the requests.
"""
from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections import namedtuple
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from tracktor import ROOT
from tracktor.config import Config
from tracktor.collector.wire import Request, WireError, parse_head, response
from tracktor.collector.calls import CallError, envelope, method_of, query_params

log = logging.getLogger(__name__)
GET_METHODS = {"/track": "track", "/set": "set", "/alias": "alias"}
LIBRARY = Path(__file__).parent / "static" / "tio.js"
OPENAPI = ROOT / "docs" / "openapi.yaml"
SCRIPT_PATH = re.compile(r"/scripts/([A-Za-z0-9_.-]{1,64})\.js")
MAX_QUERY_BYTES = 16 * 1024
POLL_SECONDS = 0.001
_Target = namedtuple("_Target", "path query")
PREFLIGHT = (("Access-Control-Allow-Methods", "GET, POST, OPTIONS"), ("Access-Control-Allow-Headers", "Content-Type"))


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:  # the collector works on the standard loop too, only slower
        return asyncio.new_event_loop()


class Collector:
    def __init__(self, cfg: Config, bootstrap_servers: str, host: str | None = None, port: int | None = None,
                 kafka_timeout_s: float = 5.0, reuse_port: bool = False):
        """`reuse_port`: share the port with other collector processes (collector.workers)."""
        self.cfg = cfg
        self.topic = cfg.topics["raw"]
        self.limits = cfg.collector
        self.bootstrap_servers = bootstrap_servers
        self.kafka_timeout_s = kafka_timeout_s
        self.sock = socket.create_server((host or cfg.collector.host, cfg.collector.port if port is None else port),
                                         backlog=1024, reuse_port=reuse_port)
        self.library = LIBRARY.read_text()
        self.openapi = OPENAPI.read_bytes()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connections: set[_Connection] = set()
        self._producer = None
        self._thread: threading.Thread | None = None
        self._polling: asyncio.TimerHandle | None = None

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Collector":
        from confluent_kafka import Producer

        timeout_ms = int(self.kafka_timeout_s * 1000)
        self._producer = Producer({
            "bootstrap.servers": self.bootstrap_servers, "acks": "all", "enable.idempotence": True,
            "linger.ms": 5, "compression.type": "lz4", "message.timeout.ms": timeout_ms,
            "socket.connection.setup.timeout.ms": max(1000, timeout_ms), "log_level": 3,
            "logger": logging.getLogger("tracktor.collector.kafka")})
        self._connect()
        self.loop = _new_loop()
        ready = threading.Event()

        def serve():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                self.loop.create_server(lambda: _Connection(self), sock=self.sock))
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=serve, name="collector", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def _connect(self) -> None:
        """Meet the broker before the first request does (that took ~0.7 s); a collector
        without Kafka still starts and answers 503 until Kafka is back."""
        from confluent_kafka import KafkaException
        try:
            self._producer.list_topics(self.topic, timeout=self.kafka_timeout_s)
        except KafkaException as e:
            log.warning("Kafka at %s is not reachable yet: %s", self.bootstrap_servers, e)

    def stop(self) -> None:
        """Stop serving, closing kept-alive connections too (clients see it as down), and
        flush what Kafka has not acknowledged yet."""
        if self.loop is None:
            return

        def shutdown():
            self.server.close()
            for conn in list(self.connections):
                conn.closed = True
                conn.transport.abort()
            self.loop.stop()

        self.loop.call_soon_threadsafe(shutdown)
        self._thread.join(10)
        self._producer.flush(self.kafka_timeout_s)
        self.loop.close()
        self.loop = None

    # -- what a request gets -----------------------------------------------------------------
    def script(self, sid: str, host: str | None) -> str | None:
        """tio.js with the app's settings, or None for an unknown app. The library posts to
        collector.public_url when set, else to the address the browser fetched it from."""
        app = self.cfg.apps.get(sid)
        if app is None:
            return None
        endpoint = self.limits.public_url or f"http://{host or self.address.removeprefix('http://')}"
        settings = orjson.dumps({"sid": sid, "endpoint": endpoint, "autoEvents": app.auto_events.for_library()}).decode()
        return self.library.replace("/*CONFIG*/", settings.replace("</", "<\\/"))

    def envelopes(self, calls: list[tuple[str, dict]]) -> list[dict]:
        """The envelope of every (method, params) call, or CallError naming the bad call."""
        now = int(time.time() * 1000)
        envs = []
        for i, (method, params) in enumerate(calls):
            sid = params.get("sid")
            if not sid or not isinstance(sid, str):
                raise CallError(400, _at(i, calls, "missing parameter 'sid'"))
            app = self.cfg.apps.get(sid)
            if app is None:
                raise CallError(401, _at(i, calls, f"unknown sid {sid!r}"))
            try:
                envs.append(envelope(method_of(method, params), params, app, now))
            except CallError as e:
                raise CallError(e.status, _at(i, calls, e.reason)) from None
        return envs

    def produce(self, envs: list[dict], done) -> None:
        """Hand the envelopes to Kafka; `done(error or None)` runs on the loop once Kafka
        acknowledged all of them (acks=all) or one failed."""
        left = [len(envs)]

        def report(err, _msg):  # on the loop, from _poll
            if left[0] <= 0:
                return  # answered already: one of them failed
            left[0] = 0 if err is not None else left[0] - 1
            if err is not None or left[0] == 0:
                done(err)

        try:
            for env in envs:
                self._producer.produce(self.topic, orjson.dumps(env), env["app"].encode(), on_delivery=report,
                                       timestamp=env["received_at"])
        except BufferError:  # the local queue is full: Kafka has been away for a while
            left[0] = 0
            done("the producer's queue is full")
        if self._polling is None:
            self._polling = self.loop.call_later(POLL_SECONDS, self._poll)

    def _poll(self) -> None:
        """Serve librdkafka's delivery reports on the loop, every POLL_SECONDS while records
        are in flight: no thread hands them over, and the GIL is not passed back and forth."""
        self._producer.poll(0)
        self._polling = self.loop.call_later(POLL_SECONDS, self._poll) if len(self._producer) else None


def _target(target: str) -> _Target:
    """Path and query of a request target; urlsplit only for the rare absolute form."""
    if target.startswith("/"):
        path, _, query = target.partition("?")
        return _Target(path, query.partition("#")[0])
    parts = urlsplit(target)
    return _Target(parts.path, parts.query)


def _at(i: int, calls: list, reason: str) -> str:
    return f"call {i}: {reason}" if len(calls) > 1 else reason


def _json(status: int, body: dict, keep_alive: bool, extra=()) -> bytes:
    return response(status, orjson.dumps(body), keep_alive=keep_alive, extra=extra)


class _Connection(asyncio.Protocol):
    """One client connection: requests are answered in order, one at a time."""

    def __init__(self, collector: Collector):
        self.c = collector
        self.buffer = bytearray()
        self.busy = False
        self.closed = False
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.c.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc):
        self.closed = True
        self.c.connections.discard(self)

    def data_received(self, data: bytes):
        self.buffer += data
        self._next()

    # -- the request loop ------------------------------------------------------------------
    def _next(self) -> None:
        while not self.busy and not self.closed and self.buffer:
            try:
                parsed = parse_head(self.buffer, MAX_QUERY_BYTES, self.c.limits.max_body_bytes)
            except WireError as e:
                return self._send(_json(e.status, {"error": e.reason}, False), False)
            if parsed is None:
                return
            req, size = parsed
            if len(self.buffer) < size:
                return  # the body is still coming
            head = size - req.body_length
            req.body = bytes(self.buffer[head:size])
            del self.buffer[:size]
            self.busy = True
            self._handle(req)

    def _send(self, data: bytes, keep_alive: bool) -> None:
        if self.closed:
            return
        self.transport.write(data)
        if not keep_alive:
            self.closed = True
            self.transport.close()
            return
        self.busy = False
        self._next()

    def _reply(self, req: Request, status: int, body, content_type: str = "application/json", extra=()) -> None:
        data = orjson.dumps(body) if isinstance(body, dict) else body
        self._send(response(status, data, content_type, req.keep_alive, extra), req.keep_alive)

    # -- routes ----------------------------------------------------------------------------
    def _handle(self, req: Request) -> None:
        url = _target(req.target)
        if req.method == "OPTIONS":  # CORS preflight for browsers posting JSON to /batch
            return self._send(response(204, b"", keep_alive=req.keep_alive, extra=PREFLIGHT), req.keep_alive)
        if req.method == "GET":
            if url.path in GET_METHODS:
                params = query_params(url.query)
                return self._accept(req, [(GET_METHODS[url.path], params)])
            if url.path == "/health":
                return self._reply(req, 200, {"ok": True})
            if url.path == "/openapi.yaml":
                return self._reply(req, 200, self.c.openapi, "application/yaml")
            script = SCRIPT_PATH.fullmatch(url.path)
            if script:
                text = self.c.script(script.group(1), req.headers.get("host"))
                if text is None:
                    return self._reply(req, 404, f"/* tracktor: no app {script.group(1)!r} */\n".encode(),
                                       "application/javascript")
                return self._reply(req, 200, text.encode(), "application/javascript; charset=utf-8")
            return self._reply(req, 404, {"error": f"no such endpoint {url.path!r}"})
        if req.method == "POST":
            if url.path != "/batch":
                return self._reply(req, 404, {"error": f"no such endpoint {url.path!r}"})
            return self._batch(req, url.query)
        return self._reply(req, 405, {"error": f"method {req.method} not allowed"}, extra=(("Allow", "GET, POST, OPTIONS"),))

    def _batch(self, req: Request, query: str) -> None:
        limits = self.c.limits
        try:
            calls = orjson.loads(req.body or b"null")
        except orjson.JSONDecodeError as e:
            return self._reply(req, 400, {"error": f"body is not JSON: {e}"})
        if not isinstance(calls, list) or not calls or not all(isinstance(c, dict) for c in calls):
            return self._reply(req, 400, {"error": "body must be a non-empty JSON array of call objects"})
        if len(calls) > limits.max_batch_calls:
            return self._reply(req, 413, {"error": f"more than {limits.max_batch_calls} calls in one batch"})
        default_sid = query_params(query).get("sid")
        prepared = []
        for c in calls:
            params = dict(c)
            params.setdefault("sid", default_sid)
            prepared.append((str(params.pop("method", "")), params))
        self._accept(req, prepared)

    def _accept(self, req: Request, calls: list[tuple[str, dict]]) -> None:
        try:
            envs = self.c.envelopes(calls)
        except CallError as e:
            return self._reply(req, e.status, {"error": e.reason})
        answered = []

        def done(error):
            if answered:
                return
            answered.append(True)
            timer.cancel()
            if error is None:
                return self._reply(req, 200, {"accepted": len(envs)})
            log.warning("Kafka did not take %d envelopes: %s", len(envs), error)
            self._reply(req, 503, {"error": f"Kafka is unavailable, retry later ({error})"}, extra=(("Retry-After", "1"),))

        # librdkafka fails a record after message.timeout.ms; this only guards against a report that never comes
        timer = self.c.loop.call_later(self.c.kafka_timeout_s * 2 + 1, done, "no answer from Kafka")
        self.c.produce(envs, done)
