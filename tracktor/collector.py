"""The HTTP collector: the seed's tracking API in front of `tracktor.raw`.

  GET  /track  /set  /alias      one call, url-encoded parameters (the seed's HTTP API)
  POST /batch                    a JSON array of calls: {"method": "track"|"set"|"alias"|"identify"
                                 |"setCart"|"cancelCart"|"purchaseCart", "sid": …, other parameters}
  GET  /scripts/<sid>.js         the JavaScript library (tracktor/static/tio.js) set up for the app
  GET  /openapi.yaml             the OpenAPI description of this API (docs/openapi.yaml)
  GET  /health                   200 when serving

200 only after Kafka has every envelope of the request (acks=all); 503 while Kafka is
unavailable (clients retry); 400/401/403/413 with the reason. The decisions are in
udfs/collector.py.
"""
from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tracktor import ROOT
from tracktor.config import Config
from udfs.collector import CallError, envelope, method_of

log = logging.getLogger(__name__)
GET_METHODS = {"/track": "track", "/set": "set", "/alias": "alias"}
LIBRARY = ROOT / "tracktor" / "static" / "tio.js"
OPENAPI = ROOT / "docs" / "openapi.yaml"
SCRIPT_PATH = re.compile(r"/scripts/([A-Za-z0-9_.-]{1,64})\.js")
MAX_QUERY_BYTES = 16 * 1024


class Collector:
    def __init__(self, cfg: Config, bootstrap_servers: str, host: str | None = None, port: int | None = None,
                 kafka_timeout_s: float = 5.0):
        self.cfg = cfg
        self.topic = cfg.topics["raw"]
        self.limits = cfg.collector
        self.bootstrap_servers = bootstrap_servers
        self.kafka_timeout_s = kafka_timeout_s
        self._producer = None
        self._producer_lock = threading.Lock()
        self._connections: set = set()
        self._connections_lock = threading.Lock()
        self.server = ThreadingHTTPServer((host or cfg.collector["host"], cfg.collector["port"] if port is None else port),
                                          _handler(self))
        self.server.daemon_threads = True

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "Collector":
        threading.Thread(target=self.server.serve_forever, name="collector", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving, closing kept-alive connections too (clients see it as down), and
        flush what Kafka has not acknowledged yet."""
        self.server.shutdown()
        self.server.server_close()
        with self._connections_lock:
            for conn in self._connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._producer is not None:
            self._producer.close(timeout=5)

    def producer(self):
        """The Kafka producer, made on first use: the collector starts (and answers 503)
        while Kafka is down, and connects once it is back."""
        with self._producer_lock:
            if self._producer is None:
                from kafka import KafkaProducer
                ms = int(self.kafka_timeout_s * 1000)
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap_servers, acks="all", linger_ms=2, compression_type="lz4",
                    max_block_ms=ms, request_timeout_ms=ms, delivery_timeout_ms=2 * ms + 1000, retries=3,
                    bootstrap_timeout_ms=ms)
            return self._producer

    def script(self, sid: str, host: str | None) -> str | None:
        """tio.js with the app's settings, or None for an unknown app. The library posts to
        collector.public_url when set, else to the address the browser fetched it from."""
        app = self.cfg.apps.get(sid)
        if app is None:
            return None
        endpoint = self.limits.get("public_url") or f"http://{host or self.address.removeprefix('http://')}"
        settings = json.dumps({"sid": sid, "endpoint": endpoint, "autoEvents": app.auto_events})
        return LIBRARY.read_text().replace("/*CONFIG*/", settings.replace("</", "<\\/"))

    def accept(self, calls: list[tuple[str, dict]]) -> int:
        """Envelopes for (method, params) calls, all on Kafka before returning; CallError else."""
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
        try:
            producer = self.producer()
            futures = [producer.send(self.topic, key=env["app"].encode(),
                                     value=json.dumps(env, separators=(",", ":")).encode()) for env in envs]
            for f in futures:  # only this request's records: flush() would wait for everyone's
                f.get(timeout=self.kafka_timeout_s)
        except Exception as e:  # every Kafka failure means the same to the client: retry later
            log.warning("Kafka did not take %d envelopes: %s", len(envs), e)
            raise CallError(503, f"Kafka is unavailable, retry later ({type(e).__name__})") from None
        return len(envs)


def _at(i: int, calls: list, reason: str) -> str:
    return f"call {i}: {reason}" if len(calls) > 1 else reason


def _handler(collector: Collector):
    limits = collector.limits

    class Handler(BaseHTTPRequestHandler):
        server_version = "tracktor-collector"
        protocol_version = "HTTP/1.1"
        # Headers and body in one segment, sent at once: written separately, Nagle's algorithm
        # and the client's delayed ACK hold every keep-alive response back ~40 ms.
        disable_nagle_algorithm = True
        wbufsize = 64 * 1024

        def setup(self):
            super().setup()
            with collector._connections_lock:
                collector._connections.add(self.connection)

        def finish(self):
            with collector._connections_lock:
                collector._connections.discard(self.connection)
            super().finish()

        def log_message(self, fmt, *args):  # access log at debug level, not stderr
            log.debug("%s " + fmt, self.address_string(), *args)

        def _reply(self, status: int, body: dict | str, content_type: str = "application/json") -> None:
            data = (json.dumps(body) if isinstance(body, dict) else body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Access-Control-Allow-Origin", "*")
            if status == 503:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(data)

        def _accept(self, calls) -> None:
            try:
                self._reply(200, {"accepted": collector.accept(calls)})
            except CallError as e:
                self._reply(e.status, {"error": e.reason})

        def do_OPTIONS(self):  # CORS preflight for browsers posting JSON to /batch
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Content-Type")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            if len(self.path) > MAX_QUERY_BYTES:
                return self._reply(413, {"error": f"request line longer than {MAX_QUERY_BYTES} bytes"})
            url = urlsplit(self.path)
            if url.path == "/health":
                return self._reply(200, {"ok": True})
            if url.path == "/openapi.yaml":
                return self._reply(200, OPENAPI.read_text(), "application/yaml")
            script = SCRIPT_PATH.fullmatch(url.path)
            if script:
                text = collector.script(script.group(1), self.headers.get("Host"))
                if text is None:
                    return self._reply(404, f"/* tracktor: no app {script.group(1)!r} */\n", "application/javascript")
                return self._reply(200, text, "application/javascript; charset=utf-8")
            if url.path not in GET_METHODS:
                return self._reply(404, {"error": f"no such endpoint {url.path!r}"})
            params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            self._accept([(GET_METHODS[url.path], params)])

        def do_POST(self):
            url = urlsplit(self.path)
            if url.path != "/batch":
                return self._reply(404, {"error": f"no such endpoint {url.path!r}"})
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                return self._reply(411, {"error": "Content-Length is required"})
            if length > limits["max_body_bytes"]:
                self.close_connection = True
                return self._reply(413, {"error": f"body larger than {limits['max_body_bytes']} bytes"})
            try:
                calls = json.loads(self.rfile.read(length) or b"null")
            except ValueError as e:
                return self._reply(400, {"error": f"body is not JSON: {e}"})
            if not isinstance(calls, list) or not calls or not all(isinstance(c, dict) for c in calls):
                return self._reply(400, {"error": "body must be a non-empty JSON array of call objects"})
            if len(calls) > limits["max_batch_calls"]:
                return self._reply(413, {"error": f"more than {limits['max_batch_calls']} calls in one batch"})
            default_sid = {k: v[-1] for k, v in parse_qs(url.query).items()}.get("sid")
            prepared = []
            for c in calls:
                params = dict(c)
                params.setdefault("sid", default_sid)
                prepared.append((str(params.pop("method", "")), params))
            self._accept(prepared)

    return Handler
