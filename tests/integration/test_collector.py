"""The collector over real HTTP, in front of the real broker: every endpoint and error."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import jsonschema
import pytest

from tests.conftest import make_config, read_topic
from tests.test_schemas import SCHEMAS
from tracktor.topics import ensure_topics
from tracktor.collector.server import Collector
from tracktor.dev.kafka_local import free_port
from tracktor.collector.calls import signature

pytestmark = pytest.mark.integration
SECRET = "2D8CarQ4rX3WvH6TK7DpJDk5"
TS = "1429186474"  # the seed's example timestamp


@pytest.fixture(scope="module")
def setup(kafka, tmp_path_factory):
    cfg = make_config(tmp_path_factory.mktemp("collector"), "col")
    signed = cfg.apps["demo-video"].model_copy(update={"sid": "signed-app", "secret": SECRET, "signed_only": True})
    cfg = cfg.updated(apps=[*cfg.app_list, signed], collector={"max_body_bytes": 20_000, "max_batch_calls": 50})
    ensure_topics(kafka, cfg.kafka, partitions=2)
    collector = Collector(cfg, kafka, port=0).start()
    yield cfg, collector
    collector.stop()


def call(base, path, params=None, body=None):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    req = urllib.request.Request(url, data=None if body is None else body.encode(),
                                 headers={"Content-Type": "application/json"} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def raw(kafka, cfg):
    return [v for _, v in read_topic(kafka, cfg.topics["raw"])]


def test_the_seeds_example_calls_arrive_on_kafka_as_envelopes(setup, kafka):
    cfg, c = setup
    base, ts = c.address, "1429186474"
    assert call(base, "/track", {"sid": "demo-video", "ts": ts, "id": "unicorn", "action": "rated item",
                                 "data": "{category:'tires',item:'Acme inc R14',rating:5}"}) == (200, {"accepted": 1})
    # the seed sends a property update and an alias to /track as well
    assert call(base, "/track", {"sid": "demo-video", "ts": ts, "id": "unicorn", "data": "{billing_plan:'Gold'}"})[0] == 200
    assert call(base, "/track", {"sid": "demo-video", "ts": ts, "srcid": "a-x123124123", "destid": "unicorn"})[0] == 200
    assert call(base, "/set", {"sid": "demo-video", "ts": ts, "id": "unicorn", "data": '{"delete_me": null}'})[0] == 200
    assert call(base, "/alias", {"sid": "demo-video", "ts": ts, "srcid": "a-2", "destid": "unicorn"})[0] == 200
    envs = raw(kafka, cfg)
    v = jsonschema.Draft202012Validator(SCHEMAS["tracktor.raw"])
    for env in envs:
        v.validate(env)
    assert [(e["type"], e.get("data")) for e in envs] == [
        ("track", {"category": "tires", "item": "Acme inc R14", "rating": 5}), ("set", {"billing_plan": "Gold"}),
        ("alias", None), ("set", {"delete_me": None}), ("alias", None)]
    assert envs[0]["ts"] == 1429186474000 and envs[0]["app"] == "demo-video"
    assert len({e["event_id"] for e in envs}) == len(envs)


def test_a_batch_is_accepted_whole_or_refused_whole(setup, kafka):
    cfg, c = setup
    before = len(raw(kafka, cfg))
    calls = [{"method": "identify", "ts": 1429186474 + 1, "id": "u9", "previous_id": "a-9"},
             {"method": "track", "ts": 1429186474 + 2, "id": "u9", "action": "Site visit", "data": {"page": "/"}},
             {"method": "setCart", "ts": 1429186474 + 3, "id": "u9", "cart": {"totalprice": 3.98, "products": []}}]
    assert call(c.address, "/batch?sid=demo-shop", body=json.dumps(calls)) == (200, {"accepted": 3})
    bad = calls + [{"method": "track", "ts": 1429186474 + 4, "id": "u9"}]
    status, body = call(c.address, "/batch?sid=demo-shop", body=json.dumps(bad))
    assert status == 400 and body["error"] == "call 3: missing parameter 'action'"
    assert len(raw(kafka, cfg)) == before + 3


@pytest.mark.parametrize("path, params, status, reason", [
    ("/track", {"ts": TS, "id": "u", "action": "x"}, 400, "missing parameter 'sid'"),
    ("/track", {"sid": "nobody", "ts": TS, "id": "u", "action": "x"}, 401, "unknown sid 'nobody'"),
    ("/track", {"sid": "demo-video", "id": "u", "action": "x"}, 400, "missing parameter 'ts'"),
    ("/set", {"sid": "demo-video", "ts": TS, "id": "u", "data": "{oops"}, 400, "'data' is not a JSON object"),
    ("/track", {"sid": "signed-app", "ts": TS, "id": "5115", "action": "x"}, 403, "accepts only signed data"),
    ("/track", {"sid": "signed-app", "ts": TS, "id": "5116", "action": "x",
                "sign": "9622E88BED0B5BC186286CB9504A02E5F3B4207DCA0AB23CA4FBDDFC15627E2F"}, 403, "does not match"),
    ("/nowhere", {"sid": "demo-video"}, 404, "no such endpoint"),
])
def test_errors_name_what_is_wrong(setup, path, params, status, reason):
    _, c = setup
    got, body = call(c.address, path, params)
    assert got == status and reason in body["error"]


def test_secure_mode_takes_the_seeds_signature(setup, kafka):
    cfg, c = setup
    assert call(c.address, "/track", {"sid": "signed-app", "ts": TS, "id": "5115", "action": "x",
                                      "sign": signature(SECRET, "5115").lower()})[0] == 200
    assert any(e["app"] == "signed-app" for e in raw(kafka, cfg))


def test_oversized_requests_get_413(setup):
    _, c = setup
    assert call(c.address, "/batch?sid=demo-video", body=json.dumps([{"method": "track", "x": "y" * 30_000}]))[0] == 413
    many = [{"method": "track", "ts": 1429186474 + 1, "id": "u", "action": "x"}] * 51
    assert call(c.address, "/batch?sid=demo-video", body=json.dumps(many))[0] == 413
    assert call(c.address, "/track", {"sid": "demo-video", "ts": TS, "id": "u", "action": "x" * 20_000})[0] == 414


def test_while_kafka_is_unreachable_the_answer_is_503_so_clients_retry(setup):
    cfg, _ = setup
    down = Collector(cfg, f"127.0.0.1:{free_port()}", port=0, kafka_timeout_s=1.0).start()
    try:
        t = time.monotonic()
        status, body = call(down.address, "/track", {"sid": "demo-video", "ts": TS, "id": "u", "action": "x"})
        assert status == 503 and "retry" in body["error"]
        assert time.monotonic() - t < 10
    finally:
        down.stop()


def fetch(base, path):
    try:
        with urllib.request.urlopen(base + path, timeout=30) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def test_the_javascript_library_is_served_set_up_for_the_app(setup):
    cfg, c = setup
    status, ctype, text = fetch(c.address, "/scripts/demo-video.js")
    assert status == 200 and ctype.startswith("application/javascript")
    settings = json.loads(text[text.rindex("(window, document, ") + len("(window, document, "):text.rindex(");")])
    assert settings == {"sid": "demo-video", "endpoint": c.address, "autoEvents": cfg.apps["demo-video"].auto_events.for_library()}
    status, _, text = fetch(c.address, "/scripts/nobody.js")
    assert status == 404 and "no app 'nobody'" in text


def test_the_openapi_description_is_served_and_covers_every_endpoint(setup):
    import yaml
    _, c = setup
    status, ctype, text = fetch(c.address, "/openapi.yaml")
    spec = yaml.safe_load(text)
    assert status == 200 and ctype == "application/yaml" and spec["openapi"].startswith("3.")
    assert {"/track", "/set", "/alias", "/batch", "/scripts/{sid}.js", "/health"} <= set(spec["paths"])
    call_fields = set(spec["components"]["schemas"]["Call"]["properties"])
    assert {"method", "sid", "ts", "id", "sign", "action", "data", "srcid", "destid", "destsign", "previous_id",
            "event_id"} <= call_fields


def test_several_collector_processes_share_the_port_and_lose_nothing(kafka, tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    from tracktor.collector.processes import CollectorProcesses
    cfg = make_config(tmp_path, "colprocs")
    ensure_topics(kafka, cfg.kafka, partitions=2)
    group = CollectorProcesses(cfg, kafka, workers=3, port=0).start()
    try:
        assert len(group.children) == 2 and all(child.is_alive() for child in group.children)

        def send(k):  # a new connection per call, so the kernel spreads them over the processes
            return call(group.address, "/track", {"sid": "demo-video", "ts": 1700000000 + k, "id": f"u{k}", "action": "A"})
        with ThreadPoolExecutor(8) as pool:
            assert all(answer == (200, {"accepted": 1}) for answer in pool.map(send, range(300)))
    finally:
        group.stop()
    assert not any(child.is_alive() for child in group.children)
    envs = [v for _, v in read_topic(kafka, cfg.topics["raw"])]
    assert sorted(e["id"] for e in envs) == sorted(f"u{k}" for k in range(300))
    prefixes = {e["event_id"][:16] for e in envs}  # each process draws its own id prefix
    assert len(prefixes) == 3 and len({e["event_id"] for e in envs}) == 300

