"""The HTTP collector: the seed's tracking API in front of `tracktor.raw`.

  GET  /track  /set  /alias      one call, url-encoded parameters (the seed's HTTP API)
  POST /batch                    a JSON array of calls: {"method": "track"|"set"|"alias"|"identify"
                                 |"setCart"|"cancelCart"|"purchaseCart", "sid": …, other parameters}
  GET  /scripts/<sid>.js         the JavaScript library (tracktor/collector/static/tio.js) set up for the app
  GET  /openapi.yaml             the OpenAPI description of this API (docs/openapi.yaml)
  GET  /health                   200 when serving

200 only after Kafka has every envelope of the request (acks=all); 503 while Kafka is
unavailable (clients retry); 4xx with the reason for anything malformed (connection.py).
The decisions are in calls.py.

How it is fast: one asyncio event loop (uvloop) serves every connection, and librdkafka
(confluent-kafka) batches the records of all in-flight requests into few produce requests.
A request never blocks the loop while Kafka acknowledges: the loop reads librdkafka's
delivery reports every millisecond while records are in flight, and they complete the requests.

Time: every collector.heartbeat_interval_ms the collector writes its clock into every
partition of tracktor.raw (a record keyed `#hb:N`), which is where the jobs' event time
comes from when an app goes quiet (docs/architecture.md, "Time").
"""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from pathlib import Path

import orjson

from tracktor import ROOT
from tracktor.collector.calls import CallError, envelope, method_of, serialized
from tracktor.config import Config

log = logging.getLogger(__name__)
LIBRARY = Path(__file__).parent / "static" / "tio.js"
OPENAPI = ROOT / "docs" / "openapi.yaml"
POLL_SECONDS = 0.001
HEARTBEAT_PREFIX = "#hb:"


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
        self.apps = cfg.apps
        self.topic = cfg.topics["raw"]
        self.limits = cfg.collector
        self.bootstrap_servers = bootstrap_servers
        self.kafka_timeout_s = kafka_timeout_s
        self.sock = socket.create_server((host or cfg.collector.host, cfg.collector.port if port is None else port),
                                         backlog=1024, reuse_port=reuse_port)
        self.library = LIBRARY.read_text()
        self.openapi = OPENAPI.read_bytes()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connections: set = set()
        self.partitions = 0
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

        from tracktor.collector.connection import Connection

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
                self.loop.create_server(lambda: Connection(self), sock=self.sock))
            self.loop.call_soon(self._sweep)
            self.loop.call_soon(self._heartbeat)
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
            metadata = self._producer.list_topics(self.topic, timeout=self.kafka_timeout_s)
            self.partitions = len(metadata.topics[self.topic].partitions)
        except (KafkaException, KeyError) as e:
            log.warning("Kafka at %s is not reachable yet: %s", self.bootstrap_servers, e)

    def stop(self) -> None:
        """Stop serving, closing kept-alive connections too (clients see it as down), and
        flush what Kafka has not acknowledged yet."""
        if self.loop is None:
            return

        def shutdown():
            self.server.close()
            for conn in list(self.connections):
                conn.abort()
            self.loop.stop()

        self.loop.call_soon_threadsafe(shutdown)
        self._thread.join(10)
        self._producer.flush(self.kafka_timeout_s)
        self.loop.close()
        self.loop = None

    def _sweep(self) -> None:
        """Close connections past their deadlines (connection.py), twice a second."""
        now = time.monotonic()
        for conn in list(self.connections):
            conn.check_deadline(now)
        self.loop.call_later(0.5, self._sweep)

    def _heartbeat(self) -> None:
        """This collector's clock into every partition of the raw topic (not acknowledged:
        a lost heartbeat is replaced by the next)."""
        if not self.partitions:
            self._connect()
        now = int(time.time() * 1000)
        value = orjson.dumps({"heartbeat": now})
        try:
            for p in range(self.partitions):
                self._producer.produce(self.topic, value, f"{HEARTBEAT_PREFIX}{p}".encode(), partition=p, timestamp=now)
        except (BufferError, Exception) as e:  # noqa: BLE001 - Kafka away: the next beat tries again
            log.debug("heartbeat not sent: %s", e)
        self._poll_soon()
        self.loop.call_later(self.limits.heartbeat_interval_ms / 1000, self._heartbeat)

    # -- what a request gets -----------------------------------------------------------------
    def script(self, sid: str, host: str | None) -> str | None:
        """tio.js with the app's settings, or None for an unknown app. The library posts to
        collector.public_url when set, else to the address the browser fetched it from."""
        app = self.apps.get(sid)
        if app is None:
            return None
        endpoint = self.limits.public_url or f"http://{host or self.address.removeprefix('http://')}"
        settings = orjson.dumps({"sid": sid, "endpoint": endpoint, "autoEvents": app.auto_events.for_library()}).decode()
        return self.library.replace("/*CONFIG*/", settings.replace("</", "<\\/"))

    def envelopes(self, calls: list[tuple[str, dict]]) -> list[tuple[dict, bytes]]:
        """Every (method, params) call as its envelope and the envelope's JSON, or CallError
        naming the bad call: a batch is checked and serialised whole before any of it is sent."""
        now = int(time.time() * 1000)
        out = []
        for i, (method, params) in enumerate(calls):
            sid = params.get("sid")
            if not sid or not isinstance(sid, str):
                raise CallError(400, _at(i, calls, "missing parameter 'sid'"))
            app = self.apps.get(sid)
            if app is None:
                raise CallError(401, _at(i, calls, f"unknown sid {sid[:100]!r}"))
            try:
                env = envelope(method_of(method, params), params, app, now)
                out.append((env, serialized(env)))
            except CallError as e:
                raise CallError(e.status, _at(i, calls, e.reason)) from None
        return out

    def produce(self, envs: list[tuple[dict, bytes]], done) -> None:
        """Hand the envelopes to Kafka; `done(error or None)` runs on the loop once Kafka
        acknowledged all of them (acks=all) or one failed."""
        from confluent_kafka import KafkaException

        left = [len(envs)]

        def report(err, _msg):  # on the loop, from _poll
            if left[0] <= 0:
                return  # answered already: one of them failed
            left[0] = 0 if err is not None else left[0] - 1
            if err is not None or left[0] == 0:
                done(err)

        try:
            for env, text in envs:
                self._producer.produce(self.topic, text, env["app"].encode(), on_delivery=report,
                                       timestamp=env["received_at"])
        except BufferError:  # the local queue is full: Kafka has been away for a while
            left[0] = 0
            done("the producer's queue is full")
        except KafkaException as e:
            left[0] = 0
            done(str(e))
        self._poll_soon()

    def _poll_soon(self) -> None:
        if self._polling is None:
            self._polling = self.loop.call_later(POLL_SECONDS, self._poll)

    def _poll(self) -> None:
        """Serve librdkafka's delivery reports on the loop, every POLL_SECONDS while records
        are in flight: no thread hands them over, and the GIL is not passed back and forth."""
        try:
            self._producer.poll(0)  # re-raises what a delivery callback raised: it must not stop the polling
        except Exception:  # noqa: BLE001 - logged; every other report is still served
            log.exception("a delivery report's callback failed")
        finally:
            self._polling = self.loop.call_later(POLL_SECONDS, self._poll) if len(self._producer) else None


def _at(i: int, calls: list, reason: str) -> str:
    return f"call {i}: {reason}" if len(calls) > 1 else reason
