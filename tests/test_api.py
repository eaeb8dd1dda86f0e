"""The analytics HTTP API on real HTTP over a real chDB warehouse (rows written directly)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.conftest import OtherOwner, make_config
from tests.test_warehouse import ev, ident, write
from tracktor import warehouse
from tracktor.analytics.api import Api

STEPS = ["Site visit", "Free movie view", "Registration", "Upgrade to Premium"]
DAY = "from=2026-01-01&to=2026-01-01"


@pytest.fixture(scope="module", params=["owner", "over_http"])
def api(tmp_path_factory, request):
    """The API owning the warehouse, and reading it through another owner's HTTP interface."""
    cfg = make_config(tmp_path_factory.mktemp("api"), "api")
    other = OtherOwner(cfg.clickhouse) if request.param == "over_http" else None
    client = warehouse.connect(cfg.clickhouse)
    db = cfg.clickhouse.database
    warehouse.migrate(client, db)
    write(client, "events", [ev("a-1", STEPS[0], 0, app="demo-video"), ev("u1", STEPS[1], 1, app="demo-video"),
                             ev("u2", STEPS[0], 2, app="demo-video"), ev("s1", "Product view", 3, app="demo-shop")], db)
    write(client, "identities", [ident("a-1", "u1", 1, app="demo-video")], db)
    client.close()
    server = Api(cfg, port=0).start()
    server.tokens = {sid: a.read_token for sid, a in cfg.apps.items()}
    yield server
    server.stop()
    if other:
        other.stop()


def call(api, path, app="demo-video", body=None, token=None, raw=False):
    headers = {"Authorization": f"Bearer {token or api.tokens[app]}"} if token != "" else {}
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(api.address + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            text = resp.read().decode()
            return resp.status, (text if raw else json.loads(text))
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_named_funnel_as_json(api):
    status, steps = call(api, f"/api/v1/apps/demo-video/funnels/video_journey?{DAY}")
    assert status == 200
    assert [s["people"] for s in steps] == [2, 1, 0, 0] and steps[1]["from_previous"] == 0.5


def test_the_drill_down_lists_the_people(api):
    status, people = call(api, f"/api/v1/apps/demo-video/funnels/video_journey?{DAY}&step=1&dropped=true")
    assert status == 200 and [p["person"] for p in people] == ["u2"]


def test_a_named_metric_and_an_ad_hoc_one(api):
    status, m = call(api, f"/api/v1/apps/demo-video/metrics/site_visitors?{DAY}")
    assert status == 200 and m["people"] == 2 and m["days"] == [["2026-01-01", 2]]
    status, m = call(api, f"/api/v1/apps/demo-video/metrics?{DAY}",
                     body={"name": "views", "definition": {"type": "times_event_happened", "event": STEPS[1]}})
    assert status == 200 and m["name"] == "views" and m["total"] == 1


def test_an_ad_hoc_funnel_with_a_bad_definition_is_a_400_naming_the_key(api):
    status, err = call(api, f"/api/v1/apps/demo-video/funnels?{DAY}", body={"definition": {"steps": ["A"]}})
    assert status == 400 and "steps" in err["error"]
    status, err = call(api, f"/api/v1/apps/demo-video/funnels?{DAY}",
                       body={"definition": {"steps": ["A", {"event": "B", "where": [{"property": "x", "op": "like", "value": 1}]}]}})
    assert status == 400 and "op" in err["error"] and "like" in err["error"]


def test_charts_are_self_contained_html(api):
    status, html = call(api, f"/api/v1/apps/demo-video/metrics/site_visitors?{DAY}&format=html", raw=True)
    assert status == 200 and html.startswith("<!doctype html>") and "<svg" in html
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched from outside
    status, html = call(api, f"/api/v1/apps/demo-video/funnels/video_journey?{DAY}&format=html", raw=True)
    assert status == 200 and "Free movie view" in html and "50.0% of previous" in html


@pytest.mark.parametrize("path, status, reason", [
    ("/api/v1/apps/demo-video/funnels/nope?range=today", 404, "has no funnel 'nope'"),
    ("/api/v1/apps/no-app/funnels/x", 404, "no app"),
    ("/api/v1/apps/demo-video/metrics/site_visitors?range=someday", 400, "unknown range"),
    ("/api/v1/apps/demo-video/metrics/site_visitors?from=2026-01-05&to=2026-01-01", 400, "before it starts"),
    ("/api/v1/apps/demo-video/metrics/site_visitors?from=yesterday&to=2026-01-01", 400, "'from'"),
    ("/api/v1/apps/demo-video/metrics/site_visitors?from=2026-01-01", 400, "both"),
    ("/api/v1/apps/demo-video/funnels/video_journey?range=today&step=9", 400, "step must be 1..4"),
    ("/api/v1/apps/demo-video/funnels/video_journey?range=today&format=pdf", 400, "format"),
    ("/api/v1/somewhere", 404, "no such resource"),
])
def test_bad_requests_get_the_reason(api, path, status, reason):
    got, err = call(api, path)
    assert got == status and reason in err["error"]


def test_an_apps_data_needs_that_apps_read_token_and_not_its_signing_secret(api):
    path = f"/api/v1/apps/demo-video/funnels/video_journey?{DAY}"
    assert call(api, path, token="")[0] == 401
    status, err = call(api, path, token=api.tokens["demo-shop"])  # another app's token
    assert status == 403 and "wrong read token" in err["error"]
    status, err = call(api, path, token=api.cfg.apps["demo-video"].secret)  # the signing secret reads nothing
    assert status == 403 and "wrong read token" in err["error"]
    status, listing = call(api, "/api/v1/apps/demo-shop", app="demo-shop")
    assert status == 200 and "checkout" in listing["funnels"]


def test_a_custom_range_is_capped(api):
    status, err = call(api, "/api/v1/apps/demo-video/metrics/site_visitors?from=2000-01-01&to=2026-01-01")
    assert status == 400 and "more than api.max_range_days (400)" in err["error"]


def test_a_failing_query_is_a_500_without_internals(api, monkeypatch):
    def broken(*args, **kw):
        raise RuntimeError("Code: 62. DB::Exception: secret table layout at /srv/warehouse")
    monkeypatch.setattr("tracktor.analytics.report.answer", broken)
    status, err = call(api, f"/api/v1/apps/demo-video/funnels/video_journey?{DAY}")
    assert status == 500 and err == {"error": "internal error"}


def test_a_client_that_sends_nothing_does_not_hold_the_api(api):
    import socket
    import time
    idle = [socket.create_connection(api.server.server_address[:2]) for _ in range(api.cfg.api.threads * 2)]
    try:
        t = time.monotonic()  # every pool thread is waiting on a silent client, yet a real request is answered
        assert call(api, f"/api/v1/apps/demo-video/metrics/site_visitors?{DAY}")[0] == 200
        assert time.monotonic() - t < api.cfg.api.request_timeout * 3
    finally:
        for s in idle:
            s.close()


def test_oversized_and_malformed_bodies(api):
    assert call(api, "/api/v1/apps/demo-video/metrics", body=b"x" * (65 * 1024))[0] == 413
    status, err = call(api, "/api/v1/apps/demo-video/metrics", body=b"{not json")
    assert status == 400 and "not JSON" in err["error"]


def send(api, method, path, app="demo-video", body=None, token=None):
    req = urllib.request.Request(api.address + path, method=method, headers={"Authorization": f"Bearer {token}"},
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_changes_need_the_apps_admin_token_not_its_read_token(api):
    read, admin = api.tokens["demo-video"], api.cfg.apps["demo-video"].admin_token
    for method, path, body in (("POST", "/api/v1/apps/demo-video/segments", {"definitions": {"x": None}}),
                               ("DELETE", "/api/v1/apps/demo-video/people/u1", None)):
        status, err = send(api, method, path, body=body, token=read)
        assert status == 403 and "admin token" in err["error"], (method, err)
        status, err = send(api, method, path, body=body, token=api.cfg.apps["demo-shop"].admin_token)
        assert status == 403, (method, err)  # another app's admin token
    # checked before anything is written: a wrong definition is a 400 naming the segment and the condition
    status, err = send(api, "POST", "/api/v1/apps/demo-video/segments", token=admin,
                       body={"definitions": {"oops": {"where": {"event": "x", "within": "soon"}}}})
    assert status == 400 and "oops" in err["error"] and "within" in err["error"]
    status, err = send(api, "DELETE", "/api/v1/apps/demo-video/people/" + "x" * 300, token=admin)
    assert status == 400 and "256" in err["error"]
    status, err = send(api, "GET", "/api/v1/apps/demo-video/people/u1", token=read)
    assert status == 405


@pytest.mark.parametrize("raw, words", [
    (b'{"definitions": {"n": {"where": {"property": "age", "op": "gt", "value": NaN}}}}', "NaN is not a JSON number"),
    (b'{"definitions": {"n": {"where": {"property": "age", "op": "gt", "value": 18446744073709551616}}}}', "64-bit"),
    (b"[" * 5000 + b"]" * 5000, "nests too deeply"),
    (b'{"definitions": {"ok": null, "": null}}', "a segment name is 1-256 characters"),
    (json.dumps({"definitions": {"x" * 300: None}}).encode(), "a segment name is 1-256 characters"),
])
def test_a_segment_change_the_job_could_not_take_is_a_400(api, raw, words):
    req = urllib.request.Request(api.address + "/api/v1/apps/demo-video/segments", method="POST", data=raw,
                                 headers={"Authorization": f"Bearer {api.cfg.apps['demo-video'].admin_token}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=60)
    assert err.value.code == 400 and words in json.loads(err.value.read())["error"]
