"""Hostile input against the running collector over raw sockets: every case gets its exact
4xx (never a dropped connection, never a 5xx), and good calls sent afterwards are accepted
and reach ClickHouse through the real jobs. Secure mode is attacked through the same
collector and identity_merge: no identity can be forged through an alias or an identify."""
from __future__ import annotations

import io
import json
import socket
import time
import urllib.parse

import pytest

from tests.conftest import make_config, read_topic, run_jobs
from tracktor import warehouse
from tracktor.collector.calls import signature
from tracktor.collector.server import Collector
from tracktor.topics import ensure_topics
from udfs.limits import MAX_CALL_BYTES

pytestmark = pytest.mark.integration
SECRET = "2D8CarQ4rX3WvH6TK7DpJDk5"
TS = "1767225600"  # 2026-01-01
VICTIM_ANON = "a-3bxuAxl18r02UsdTUdk1Ri9"
OTHER_ANON = "a-xrWNmprAoEJM507bt7m5LKg"


@pytest.fixture(scope="module")
def collector(kafka, tmp_path_factory):
    cfg = make_config(tmp_path_factory.mktemp("abuse"), "abuse")
    signed = cfg.apps["demo-video"].model_copy(update={"sid": "signed-app", "secret": SECRET, "signed_only": True})
    cfg = cfg.updated(apps=[*cfg.app_list, signed], collector={
        "head_timeout": 1, "body_timeout": 1, "idle_timeout": 2, "max_connections": 40, "max_body_bytes": 200_000,
        "max_batch_calls": 50, "max_buffered_bytes": 64 * 1024})
    ensure_topics(kafka, cfg.kafka, partitions=2)
    c = Collector(cfg, kafka, port=0).start()
    yield cfg, c
    c.stop()


def open_socket(c) -> socket.socket:
    host, port = c.sock.getsockname()[:2]
    s = socket.create_connection((host, port), timeout=10)
    return s


def read_response(s: socket.socket | io.BufferedReader) -> tuple[int, dict, bytes]:
    """One HTTP response: status, headers, body. AssertionError if the connection closes
    before a whole response came (a dropped connection). Pipelined answers are read through
    one `s.makefile("rb")`, whose buffer keeps what arrived past the first answer."""
    f = s.makefile("rb") if isinstance(s, socket.socket) else s
    lines = []
    while not lines or lines[-1]:
        line = f.readline(65536)
        assert line, f"connection dropped without an answer (got {b''.join(lines)[:200]!r})"
        lines.append(line.rstrip(b"\r\n"))
    status = int(lines[0].decode("latin-1").split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.decode("latin-1").partition(":") for line in lines[1:-1])}
    body = f.read(int(headers.get("content-length", 0)))
    assert len(body) == int(headers.get("content-length", 0)), "connection dropped in the middle of an answer"
    return status, headers, body


def exchange(c, data: bytes, wait_s: float = 0) -> tuple[int, dict, dict]:
    with open_socket(c) as s:
        s.sendall(data)
        if wait_s:
            time.sleep(wait_s)
        status, headers, body = read_response(s)
        return status, headers, (json.loads(body) if body.startswith(b"{") else {"raw": body})


def get(path: str, params: dict) -> bytes:
    return f"GET {path}?{urllib.parse.urlencode(params)} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


GOOD = {"sid": "demo-video", "ts": TS, "id": "good-user", "action": "Site visit"}
DEEP = "{a:" * 253 + "1" + "}" * 253  # the ~6 KB GET that used to stop identity_merge for every app

CASES = [
    # (what is sent, status, words of the reason)
    (b"GARBAGE\r\n\r\n", 400, "malformed request line"),
    (b"GET /track HTTP/9.9\r\n\r\n", 400, "only HTTP/1.0 and HTTP/1.1"),
    (b"GET /track HTTP/1.1\r\nno colon here\r\n\r\n", 400, "malformed header line"),
    (b"POST /batch HTTP/1.1\r\nContent-Length: \xd9\xa1\xd9\xa2\r\n\r\n[]", 400, "Content-Length is not a number"),
    (b"POST /batch HTTP/1.1\r\nContent-Length: 12abc\r\n\r\n", 400, "Content-Length is not a number"),
    (b"POST /batch HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n[]", 400, "two different Content-Length"),
    (b"POST /batch HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411, "Content-Length is required"),
    (b"POST /batch HTTP/1.1\r\nHost: x\r\n\r\n", 411, "Content-Length is required"),
    (post("/batch?sid=demo-video", b"x" * 200_001), 413, "body larger than 200000 bytes"),
    (b"GET /track?" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n", 414, "longer than 16384"),
    (b"GET /track HTTP/1.1\r\n" + b"X-Big: " + b"b" * 70_000 + b"\r\n\r\n", 431, "request head too large"),
    (get("/set", {**GOOD, "data": DEEP}), 400, "nests deeper than 20 levels"),
    (get("/set", {**GOOD, "data": '{"big": 1234567890123456789012345678901234567890}'}), 400, "outside 64-bit integers"),
    (get("/set", {**GOOD, "data": '{"n": NaN}'}), 400, "NaN is not a JSON value"),
    (post("/batch?sid=demo-video", b'[{"method": "set", "ts": 1767225600, "id": "u", "data": {"n": 1e999}}]'), 400,
     "JSON cannot carry"),
    (post("/batch?sid=demo-video", b'[{"method": "set", "ts": 1767225600, "id": "u", "data": ' + DEEP.replace(
        "a:", '"a":').encode() + b"}]"), 400, "nests deeper than 20 levels"),
    (post("/batch", json.dumps([{"method": "track", **GOOD, "data": {"s": "x" * MAX_CALL_BYTES}}]).encode()), 413,
     f"over the limit of {MAX_CALL_BYTES:,} bytes per call"),
    (post("/batch", json.dumps([{"method": "track", **GOOD}] * 51).encode()), 413, "more than 50 calls"),
    (get("/track", {**GOOD, "ts": str(int(time.time()) + 7200)}), 400, "more than 1 hour in the future"),
    (get("/track", {**GOOD, "ts": "946684799"}), 400, "before the app's history start"),
    (get("/track", {**GOOD, "sid": "nobody"}), 401, "unknown sid 'nobody'"),
    (get("/track", {**GOOD, "sid": "signed-app"}), 403, "accepts only signed data"),
    (get("/alias", {"sid": "signed-app", "ts": TS, "srcid": "victim", "destid": "attacker",
                    "destsign": signature(SECRET, "attacker")}), 403, "'srcsign' missing for srcid 'victim'"),
    (get("/alias", {"sid": "signed-app", "ts": TS, "srcid": "a-x123124123", "destid": "attacker",
                    "destsign": signature(SECRET, "attacker")}), 403, "'srcsign' missing"),
    (post("/batch?sid=signed-app", json.dumps([{"method": "identify", "ts": 1767225600, "id": "attacker",
                                                "sign": signature(SECRET, "attacker"), "previous_id": "a-victim"}]).encode()),
     403, "'previous_sign' missing for previous_id 'a-victim'"),
    (b"DELETE /track HTTP/1.1\r\n\r\n", 405, "/track takes GET, not DELETE"),
]


@pytest.mark.parametrize("data, status, reason", CASES, ids=[f"{s}-{r[:30]}" for _, s, r in CASES])
def test_each_malformed_request_gets_its_4xx_with_the_reason(collector, data, status, reason):
    _, c = collector
    got, _, body = exchange(c, data)
    assert (got, reason in body.get("error", "")) == (status, True), body


def test_half_a_request_line_then_nothing_gets_408_after_the_head_timeout(collector):
    _, c = collector
    with open_socket(c) as s:
        s.sendall(b"GET /track?sid=demo-vi")
        t = time.monotonic()
        status, headers, body = read_response(s)
        assert status == 408 and headers["connection"] == "close" and time.monotonic() - t < 5
        assert s.recv(1) == b""  # and then it is closed


def test_a_body_that_never_comes_gets_408_after_the_body_timeout(collector):
    _, c = collector
    with open_socket(c) as s:
        s.sendall(b"POST /batch?sid=demo-video HTTP/1.1\r\nContent-Length: 100\r\n\r\n[{")
        assert read_response(s)[0] == 408


def test_an_idle_kept_alive_connection_is_closed(collector):
    _, c = collector
    with open_socket(c) as s:
        s.sendall(get("/track", GOOD))
        assert read_response(s)[0] == 200
        s.settimeout(10)
        t = time.monotonic()
        assert s.recv(1) == b"" and time.monotonic() - t < 6  # idle_timeout is 2 s


def test_past_max_connections_a_new_one_gets_503_and_the_rest_still_serve(collector):
    cfg, c = collector
    held = []
    try:
        while len(c.connections) < cfg.collector.max_connections:
            held.append(open_socket(c))
            time.sleep(0.01)
        got, _, body = exchange(c, get("/track", GOOD))
        assert got == 503 and "connections" in body["error"]
    finally:
        for s in held:
            s.close()
    time.sleep(0.5)
    assert exchange(c, get("/track", GOOD))[0] == 200


def test_a_client_that_does_not_read_its_answers_is_paused_not_buffered_without_end(collector):
    """Pipelined requests from a client that reads nothing: the collector stops reading it
    (its buffer stays near max_buffered_bytes), serves other clients meanwhile, and answers
    every request in order once the client reads."""
    cfg, c = collector
    request = get("/track", GOOD)
    n = 3000
    with open_socket(c) as s:
        s.setblocking(False)
        sent = 0
        payload = request * n
        deadline = time.monotonic() + 10
        while sent < len(payload) and time.monotonic() < deadline:
            try:
                sent += s.send(payload[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.05)
        registered = time.monotonic() + 10  # the collector's loop may not have taken the connection in yet
        while not c.connections and time.monotonic() < registered:
            time.sleep(0.05)
        conn = max(c.connections, key=lambda x: len(x.buffer))
        assert len(conn.buffer) <= cfg.collector.max_buffered_bytes + 65536 * 4
        assert exchange(c, get("/track", GOOD))[0] == 200  # others are served meanwhile
        s.setblocking(True)
        s.settimeout(30)
        s.sendall(payload[sent:])
        stream = s.makefile("rb")  # one buffer for all the answers: a read may take several
        answers = [read_response(stream)[0] for _ in range(n)]
        assert answers == [200] * n


def test_a_refused_batch_leaves_nothing_on_kafka(collector, kafka):
    cfg, c = collector
    before = len(read_topic(kafka, cfg.topics["raw"]))
    calls = [{"method": "track", **GOOD, "event_id": f"batch-ok-{i:010d}"} for i in range(5)]
    calls.insert(3, {"method": "set", **GOOD, "data": {"big": 2 ** 70}})
    got, _, body = exchange(c, post("/batch", json.dumps(calls).encode()))
    assert got == 400 and body["error"].startswith("call 3:")
    assert len(read_topic(kafka, cfg.topics["raw"])) == before


def test_good_calls_after_all_of_it_are_accepted_and_reach_clickhouse_and_forgeries_do_not(collector, kafka):
    cfg, c = collector
    for data, _, _ in CASES:  # every bad request once more, then the good ones
        exchange(c, data)
    good = [{"method": "track", **GOOD, "event_id": f"after-abuse-{i:08d}"} for i in range(20)]
    assert exchange(c, post("/batch", json.dumps(good).encode()))[0] == 200
    # secure mode through the whole pipeline: the victim's browser joins their account...
    victim = {"destid": "victim", "destsign": signature(SECRET, "victim")}
    attacker = {"destid": "attacker", "destsign": signature(SECRET, "attacker")}
    signed_calls = [
        {"method": "track", "ts": 1767225600, "id": VICTIM_ANON, "sign": signature(SECRET, VICTIM_ANON),
         "action": "Site visit"},
        {"method": "alias", "ts": 1767225601, "srcid": VICTIM_ANON, **victim},
        # ... the attacker, who learnt that anonymous id, tries to take it over, unsigned
        {"method": "alias", "ts": 1767225602, "srcid": VICTIM_ANON, **attacker},
        {"method": "identify", "ts": 1767225603, "id": "attacker", "sign": signature(SECRET, "attacker"),
         "previous_id": VICTIM_ANON},
        # an anonymous id nobody has claimed may still join an account unsigned
        {"method": "identify", "ts": 1767225604, "id": "attacker", "sign": signature(SECRET, "attacker"),
         "previous_id": OTHER_ANON},
    ]
    got, _, body = exchange(c, post("/batch?sid=signed-app", json.dumps(signed_calls).encode()))
    assert got == 200, body
    run_jobs(cfg, kafka)

    client = warehouse.connect(cfg.clickhouse)
    db = cfg.clickhouse.database
    try:
        ids = {r[0] for r in client.query(f"SELECT event_id FROM {db}.events WHERE event_id LIKE 'after-abuse-%'").result_rows}
        assert ids == {g["event_id"] for g in good}
        persons = dict(client.query(f"SELECT distinct_id, argMax(person_id, version) FROM {db}.identities "
                                    "WHERE app = 'signed-app' GROUP BY distinct_id").result_rows)
    finally:
        client.close()
    assert persons[VICTIM_ANON] == "victim" and persons[OTHER_ANON] == "attacker"
    dead = [v for _, v in read_topic(kafka, cfg.topics["dead_letter"]) if v["job"] == "identity_merge"]
    refused = [d for d in dead if "already belongs to the identified person 'victim'" in d["reason"]]
    assert len(refused) == 2
