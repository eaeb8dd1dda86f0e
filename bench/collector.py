"""Collector throughput and latency with the real broker behind it (acks=all).

Measures, in one run on the same 2 cores as the collector and the broker:
  kafka      librdkafka's own producer (confluent-kafka, the collector's) sending the same
             envelopes straight to Kafka with the collector's settings: the baseline
  GET        single GET /track calls (generated, all different) from C keep-alive connections
  batch      POST /batch of B calls from C connections

The load comes from wrk (Debian's package: apt-get install wrk), a C client that costs the
collector little of the machine; without wrk, Python client threads are used and the
figures are a floor. Every run checks that no response was an error.

    bin/tracktor bench --only collector [--quick]   (or .venv/bin/python bench/collector.py [--seconds 10])
"""
from __future__ import annotations

import atexit
import gc
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from bench.common import Figure, arguments, report  # noqa: E402

from tracktor import config  # noqa: E402
from tracktor.topics import ensure_topics  # noqa: E402
from tracktor.collector.processes import CollectorProcesses  # noqa: E402
from tracktor.dev.envelopes import to_call  # noqa: E402
from tracktor.dev.kafka_local import LocalKafka  # noqa: E402
from tracktor.dev.sample_data import Generator  # noqa: E402

WARM_UP_S = 3


def kafka_baseline(bootstrap: str, topic: str, envs: list[dict]) -> float:
    """Records/s of librdkafka producing the envelopes with the collector's settings."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 2,
                  "compression.type": "lz4"})
    values = [(orjson.dumps(e), e["app"].encode()) for e in envs]
    t = time.monotonic()
    for i, (v, k) in enumerate(values):
        while True:
            try:
                p.produce(topic, v, k)
                break
            except BufferError:
                p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    p.flush(60)
    return len(values) / (time.monotonic() - t)


def wrk(address: str, seconds: float, connections: int, script: str) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, error responses) from a wrk run with a Lua script, after
    an unmeasured run of WARM_UP_S (the broker's JIT, the producers' connections)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    for run_s in (WARM_UP_S, seconds):
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{run_s:.0f}s", "--latency", "-s", f.name, address],
                             capture_output=True, text=True, check=True).stdout

    def ms(label):
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    print(out, file=sys.stderr) if os.environ.get("WRK_OUT") else None
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), ms(50), ms(99), int(errors.group(1)) if errors else 0


def lua_list(name: str, items: list[str]) -> str:
    return f"local {name} = {{\n" + ",\n".join(json.dumps(s) for s in items) + "\n}\n"


def python_clients(address: str, seconds: float, clients: int, make) -> tuple[float, float, float, int]:
    """The fallback without wrk: (requests/s, p50 ms, p99 ms, errors) from client threads."""
    parts = urllib.parse.urlsplit(address)
    stop, lock, lat, errors, count = time.monotonic() + seconds, threading.Lock(), [], [0], [0]

    def worker(k):
        conn, mine, n = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30), [], 0
        while time.monotonic() < stop:
            method, path, body = make(k + n * clients)
            t = time.perf_counter()
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
            r = conn.getresponse()
            r.read()
            mine.append(time.perf_counter() - t)
            n += 1
            if r.status != 200:
                with lock:
                    errors[0] += 1
        with lock:
            lat.extend(mine)
            count[0] += n

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    q = statistics.quantiles(lat, n=100)
    return count[0] / seconds, q[49] * 1000, q[98] * 1000, errors[0]


def main() -> None:
    ap = arguments(__doc__)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--get-connections", type=int, default=128, help="many browsers, one call per request")
    ap.add_argument("--batch-connections", type=int, default=16, help="fewer senders of big batches")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="collector processes (collector.workers)")
    ap.add_argument("--rounds", type=int, default=3, help="the median round is the result (this machine is noisy)")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rounds = 3, 1
    cfg = config.load()
    envs = list(Generator(seed=1, people=6000))
    tracks = [e for e in envs if e["type"] == "track"]
    gets = ["/track?" + urllib.parse.urlencode({"sid": e["app"], "ts": e["ts"], "id": e["id"], "action": e["action"],
                                                "data": json.dumps(e["data"])}) for e in tracks]
    bodies = [json.dumps([to_call(e) for e in envs[i:i + args.batch]]) for i in range(0, len(envs) - args.batch, args.batch)]
    get_script = lua_list("paths", gets) + (
        "local i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format('GET', paths[(i % #paths) + 1])\nend\n")
    batch_script = lua_list("bodies", bodies) + (
        "local i = 0\nwrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\n"
        "request = function()\n  i = i + 1\n  return wrk.format('POST', '/batch', nil, bodies[(i % #bodies) + 1])\nend\n")
    gc.freeze()  # the collector runs in this process: its collections need not scan the test data
    has_wrk = shutil.which("wrk") is not None
    rounds = []  # (baseline events/s, get result, batch result)
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None  # the broker's log in memory: no disk stalls
    tmp = tempfile.mkdtemp(prefix="bench-collector-", dir=shm)
    atexit.register(shutil.rmtree, tmp, True)
    with LocalKafka(Path(tmp)) as broker:
        ensure_topics(broker.bootstrap_servers, cfg.kafka, partitions=4)
        collector = CollectorProcesses(cfg, broker.bootstrap_servers, args.workers, port=0).start()
        for n in range(args.rounds):
            base = kafka_baseline(broker.bootstrap_servers, cfg.topics["raw"], envs * 5)
            if has_wrk:
                get = wrk(collector.address, args.seconds, args.get_connections, get_script)
                batch = wrk(collector.address, args.seconds, args.batch_connections, batch_script)
            else:
                get = python_clients(collector.address, args.seconds, 8, lambda k: ("GET", gets[k % len(gets)], None))
                batch = python_clients(collector.address, args.seconds, 8,
                                       lambda k: ("POST", "/batch", bodies[k % len(bodies)]))
            rounds.append((base, get, (batch[0] * args.batch, *batch[1:])))
            print(f"round {n + 1}: baseline {base:,.0f}/s, GET {get[0]:,.0f}/s p99 {get[2]:.1f} ms, "
                  f"batch {batch[0] * args.batch:,.0f}/s p99 {batch[2]:.1f} ms", flush=True)
        collector.stop()

    def median(k):  # the round in the middle by events/s, with its own latencies and baseline
        return sorted(rounds, key=lambda r: r[k][0])[len(rounds) // 2]

    client = (f"wrk: GET from {args.get_connections} connections, /batch from {args.batch_connections}" if has_wrk
              else "8 Python client threads (no wrk: a floor)")
    print(f"\n{client}; {args.workers} collector process(es); {args.seconds:.0f}s runs after {WARM_UP_S}s warm-up; "
          f"median of {args.rounds} rounds; acks=all; broker and clients on the same 2 cores")
    figures = []
    for k, name in ((1, "GET /track"), (2, f"POST /batch of {args.batch}")):
        base, *_ = r = median(k)
        events, p50, p99, errors = r[k]
        if errors:
            raise SystemExit(f"{name}: {errors} error responses")
        figures += [Figure("collector", f"{name} calls/s", events, "calls/s", "librdkafka producer, same envelopes", base),
                    Figure("collector", f"{name} p50", p50, "ms", lower_is_better=True),
                    Figure("collector", f"{name} p99", p99, "ms", lower_is_better=True)]
    report(figures)


if __name__ == "__main__":
    main()
