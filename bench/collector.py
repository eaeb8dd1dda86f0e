"""Collector throughput and latency with the real broker behind it (acks=all).

Measures, in one run:
  kafka      kafka-python's producer sending the same envelopes straight to Kafka — baseline
  GET        single GET /track calls from C concurrent keep-alive clients: calls/s, p50/p99
  batch      POST /batch of B calls from C clients: calls/s, request p50/p99

The clients are Python threads on the same 2 cores as the collector and the broker, so the
figures are a floor for the collector, not a ceiling.

    bin/tracktor setup && .venv/bin/python bench/collector.py [--seconds 10]
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracktor import config, loader, stack  # noqa: E402
from tracktor.collector import Collector  # noqa: E402
from tracktor.envelopes import to_call  # noqa: E402
from tracktor.kafka_local import LocalKafka  # noqa: E402
from tracktor.sample_data import Generator  # noqa: E402


def load(address: str, seconds: float, clients: int, request) -> tuple[int, list[float]]:
    """Run `request(conn) -> calls` from `clients` threads for `seconds`; (calls, latencies)."""
    host, port = urllib.parse.urlsplit(address).hostname, urllib.parse.urlsplit(address).port
    stop = time.monotonic() + seconds
    counts, latencies, lock = [0], [], threading.Lock()

    def worker():
        conn = http.client.HTTPConnection(host, port, timeout=30)
        n, lat = 0, []
        while time.monotonic() < stop:
            t = time.perf_counter()
            n += request(conn)
            lat.append(time.perf_counter() - t)
        with lock:
            counts[0] += n
            latencies.extend(lat)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return counts[0], latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    cfg = config.load()
    envs = list(Generator(seed=1, people=6000))
    with LocalKafka(Path(tempfile.mkdtemp(prefix="bench-collector-"))) as broker:
        stack.ensure_topics(broker.bootstrap_servers, cfg.topics, 4)
        t = time.monotonic()
        loader.send(broker.bootstrap_servers, cfg.topics["raw"], envs, label="baseline")
        base = len(envs) / (time.monotonic() - t)
        collector = Collector(cfg, broker.bootstrap_servers, port=0).start()
        gets = [urllib.parse.urlencode({"sid": e["app"], "ts": e["ts"], "id": e["id"], "action": e["action"],
                                        "data": json.dumps(e["data"])}) for e in envs if e["type"] == "track"]
        batches = [json.dumps([to_call(e) for e in envs[i:i + args.batch]]) for i in range(0, len(envs), args.batch)]
        cursor = {"get": 0, "batch": 0}

        def one_get(conn):
            q = gets[cursor["get"] % len(gets)]
            cursor["get"] += 1
            conn.request("GET", "/track?" + q)
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status
            return 1

        def one_batch(conn):
            body = batches[cursor["batch"] % len(batches)]
            cursor["batch"] += 1
            conn.request("POST", "/batch", body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status
            return args.batch

        rows = [("kafka-python producer (baseline)", base, None, None)]
        for name, fn in (("single GET /track", one_get), (f"POST /batch of {args.batch}", one_batch)):
            calls, lat = load(collector.address, args.seconds, args.clients, fn)
            rows.append((name, calls / args.seconds, pct(lat, 50), pct(lat, 99)))
        collector.stop()
    print(f"\n{args.clients} concurrent clients, {args.seconds:.0f}s each, acks=all")
    for name, rate, p50, p99 in rows:
        lat = "" if p50 is None else f"   p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
        print(f"  {name:34s} {rate:9,.0f} calls/s  {rate / base:5.2f}x baseline{lat}")


if __name__ == "__main__":
    main()
