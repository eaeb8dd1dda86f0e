"""The analytics HTTP API on real HTTP over a real chDB warehouse (rows written directly)."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import BEGINNING, OtherOwner, make_config
from tests.test_warehouse import ev, ident, write
from tracktor import warehouse
from tracktor.analytics import pages
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
    write(client, "events", campaign_events(), db)
    write(client, "identities", [ident("a-1", "u1", 1, app="demo-video")], db)
    write(client, "profiles", [profile("u1", {"email": "Ann@Example.com", "plan": "free", "age": 30}),
                               profile("u2", {"email": "bob@example.com", "plan": "premium"})], db)
    write(client, "segments", [{"app": "demo-video", "segment": "premium", "person_id": "u2", "change": "entered",
                                "version": 1, "ts": BEGINNING}], db)
    client.close()
    server = Api(cfg, port=0).start()
    server.tokens = {sid: a.read_token for sid, a in cfg.apps.items()}
    yield server
    server.stop()
    if other:
        other.stop()


def campaign_events() -> list[dict]:
    """cart_reminder's records as the runner, delivery and the collector write them: two people
    entered, one letter sent and opened twice and clicked, one bounced; and a client's forged
    `Campaign step`, which must not count."""
    def e(who, name, minute, kind, data, eid):
        return {**ev(who, name, minute, app="demo-shop", eid=eid), "kind": kind,
                "data": {"campaign": "cart_reminder", **data}}
    sent = {"letter": "cart_reminder", "email": "carl@example.com", "subject": "Your cart", "action_id": "a1"}
    return [e("carl", "Campaign step", 0, "derived", {"block": "remind"}, "s1"),
            e("dora", "Campaign step", 0, "derived", {"block": "remind"}, "s2"),
            e("carl", "Campaign step", 1, "track", {"block": "remind"}, "forged"),
            e("carl", "Letter sent", 1, "derived", sent, "a1:sent"),
            e("carl", "Letter opened", 2, "track", {"letter": "cart_reminder", "action_id": "a1"}, "o1"),
            e("carl", "Letter opened", 3, "track", {"letter": "cart_reminder", "action_id": "a1"}, "o2"),
            e("carl", "Letter clicked", 3, "track", {"letter": "cart_reminder", "action_id": "a1", "url": "u"}, "c1"),
            e("dora", "Letter bounced", 1, "derived", {**sent, "email": "dora@example.com", "action_id": "a2",
                                                        "reason": "SMTP 550"}, "a2:bounced")]


def test_a_campaigns_statistics(api):
    status, c = call(api, "/api/v1/apps/demo-shop/campaigns/cart_reminder", app="demo-shop")
    assert status == 200 and c["name"] == "cart_reminder"
    assert c["blocks"] == [{"block": "remind", "entered": 2, "people": 2}]  # the forged step is not counted
    assert c["letters"] == [{"letter": "cart_reminder", "sent": 1, "opened": 1, "bounced": 1, "failed": 0,
                             "clicked": 1, "total_clicks": 1}]
    assert sorted((a["status"], a["email"], a["opens"], a["clicks"]) for a in c["activity"]) == \
        [("bounced", "dora@example.com", 0, 0), ("clicked", "carl@example.com", 2, 1)]
    status, _ = call(api, "/api/v1/apps/demo-video/campaigns/cart_reminder")
    assert status == 200  # another app's campaign of that name: nothing of demo-shop's shows
    assert call(api, "/api/v1/apps/demo-video/campaigns/cart_reminder")[1]["blocks"] == []


def test_report_campaign_prints_the_same_statistics(api):
    from tracktor.analytics import report
    q = report.ask(api.cfg, "demo-shop", "campaign", "cart_reminder")
    text = report.render(q, report.answer(api.warehouse(), api.database, q))
    lines = text.splitlines()
    assert lines[0] == "demo-shop campaign cart_reminder"
    assert lines[lines.index("blocks (entries, people):") + 2].split() == ["remind", "2", "2"]
    assert lines[lines.index("letters:") + 2].split() == ["cart_reminder", "1", "1", "1", "0", "1", "1"]
    assert "carl@example.com" in text and "bounced" in text
    with pytest.raises(ValueError, match="asked about by name"):
        report.ask(api.cfg, "demo-shop", "campaign", "x", definition={"trigger": {}})


def test_campaign_and_newsletter_changes_need_the_admin_token_and_say_what_is_wrong(api):
    admin = api.cfg.apps["demo-video"].admin_token
    for path, body in (("/api/v1/apps/demo-video/campaigns", {"definitions": {"x": None}}),
                       ("/api/v1/apps/demo-video/newsletters", {"name": "n", "subject": "s", "body": "b"})):
        status, err = send(api, "POST", path, body=body, token=api.tokens["demo-video"])
        assert status == 403 and "admin token" in err["error"]
    loop = {"trigger": {"event": "x"}, "start": "a", "blocks": {"a": {"emit": {"event": "x"}}}}
    for path, body, words in [
            ("/api/v1/apps/demo-video/campaigns", {"definitions": {"c": loop}}, "without end"),
            ("/api/v1/apps/demo-video/campaigns", {"definitions": {"c": {"trigger": {}, "start": "a"}}}, "campaign 'c'"),
            ("/api/v1/apps/demo-video/newsletters", {"name": "n", "subject": "s"}, "'body'"),
            ("/api/v1/apps/demo-video/newsletters", {"name": "n", "subject": "s", "body": "b", "segments": "x"},
             "segments must be a list"),
            ("/api/v1/apps/demo-video/newsletters", {"name": "", "subject": "s", "body": "b"}, "1-200 characters")]:
        status, err = send(api, "POST", path, body=body, token=admin)
        assert status == 400 and words in err["error"], (body, err)
    status, err = send(api, "POST", "/api/v1/apps/demo-video/newsletters", token=admin,
                       body={"name": "n", "subject": "s", "body": "<p>b</p>"})
    assert status == 503 and "could not be queued" in err["error"]  # no Kafka here: said so, not a 500


def profile(person, properties, app="demo-video"):
    return {"app": app, "person_id": person, "properties": properties, "version": 1, "ts": BEGINNING}


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
    status, err = send(api, "PUT", "/api/v1/apps/demo-video/people/u1", token=admin)
    assert status == 405 and "PUT" in err["error"]


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


# -- the dashboard's questions ---------------------------------------------------------------------
def test_the_dashboard_has_every_metric_and_funnel_with_the_numbers_of_their_own_endpoints(api):
    status, board = call(api, f"/api/v1/apps/demo-video/dashboard?{DAY}")
    assert status == 200 and board["first"] == board["last"] == "2026-01-01"
    assert [m["name"] for m in board["metrics"]] == list(api.cfg.apps["demo-video"].metrics)
    assert [f["name"] for f in board["funnels"]] == list(api.cfg.apps["demo-video"].funnels)
    for m in board["metrics"]:
        alone = call(api, f"/api/v1/apps/demo-video/metrics/{m['name']}?{DAY}")[1]
        assert {k: v for k, v in m.items() if k != "saved"} == alone
    assert board["funnels"][0]["steps"] == call(api, f"/api/v1/apps/demo-video/funnels/video_journey?{DAY}")[1]
    assert [s["people"] for s in board["funnels"][0]["steps"]] == [2, 1, 0, 0]
    listing = call(api, "/api/v1/apps/demo-video")[1]
    assert listing["windows"] == {n: f.window_seconds for n, f in api.cfg.apps["demo-video"].funnels.items()}
    assert {s["name"]: s["count"] for s in board["segments"]}["premium"] == 1


def test_people_are_found_by_an_old_anonymous_id_a_part_of_their_email_or_a_property(api):
    def found(q, **extra):
        status, res = call(api, "/api/v1/apps/demo-video/people?" + urllib.parse.urlencode({"q": q, **extra}))
        assert status == 200, res
        return [p["person"] for p in res["people"]], res["matches"]
    assert found("a-1") == (["u1"], 1)               # the anonymous id merged into u1
    assert found("ann@EXAMPLE") == (["u1"], 1)       # any case
    assert found("plan=premium") == (["u2"], 1)
    assert found("age=30") == (["u1"], 1)            # a number, as its JSON
    assert found("nobody") == ([], 0)
    assert found("") == (["u1", "u2"], 2)
    assert found("", limit=1, offset=1) == (["u2"], 2)
    assert found("", limit=1, offset=5) == ([], 2)   # past the last page: still the number of matches
    status, res = call(api, "/api/v1/apps/demo-shop/people?q=", app="demo-shop")
    assert status == 200 and [p["person"] for p in res["people"]] == ["carl", "dora", "s1"]  # only seen in events
    status, res = call(api, "/api/v1/apps/demo-video/people?q=" + "x" * 201)
    assert status == 400 and "200" in res["error"]


def test_a_person_page_from_any_of_their_ids(api):
    status, page = call(api, "/api/v1/apps/demo-video/people/a-1")
    assert status == 200 and page["person"] == "u1" and page["ids"] == ["a-1", "u1"]
    assert page["properties"]["email"] == "Ann@Example.com" and page["segments"] == []
    assert [(e["event"], e["distinct_id"]) for e in page["events"]] == [("Free movie view", "u1"), ("Site visit", "a-1")]
    status, page = call(api, "/api/v1/apps/demo-video/people/u2")
    assert [s for s, _ in page["segments"]] == ["premium"]
    status, err = call(api, "/api/v1/apps/demo-video/people/never-seen")
    assert status == 404 and "never-seen" in err["error"]
    assert call(api, "/api/v1/apps/demo-video/people?id=a-1")[1]["person"] == "u1"   # ids a path cannot carry
    assert call(api, "/api/v1/apps/demo-video/people?id=..")[0] == 404
    status, page = call(api, "/api/v1/apps/demo-shop/people/s1", app="demo-shop")
    assert status == 200 and page["ids"] == ["s1"] and page["properties"] == {} and page["updated"] is None
    assert call(api, "/api/v1/apps/demo-shop/people/u1", app="demo-shop")[0] == 404  # another app's person


def test_the_segments_with_their_members_over_time(api):
    status, res = call(api, f"/api/v1/apps/demo-video/segments?{DAY}")
    premium = next(s for s in res["segments"] if s["name"] == "premium")
    assert status == 200 and premium["count"] == 1 and premium["days"] == [["2026-01-01", 1]]


def test_a_funnel_drill_down_pages(api):
    path = f"/api/v1/apps/demo-video/funnels/video_journey?{DAY}&step=1&limit=1"
    assert [p["person"] for p in call(api, path)[1]] == ["u1"]
    assert [p["person"] for p in call(api, path + "&offset=1")[1]] == ["u2"]
    assert call(api, path + "&offset=-1")[0] == 400


def test_a_definition_saved_with_the_admin_token_joins_the_apps_definitions(api):
    admin, read = api.cfg.apps["demo-video"].admin_token, api.tokens["demo-video"]
    body = {"kind": "metric", "name": "views", "definition_yaml": "type: times_event_happened\nevent: Free movie view"}
    assert send(api, "POST", "/api/v1/apps/demo-video/definitions", body=body, token=read)[0] == 403
    assert send(api, "POST", "/api/v1/apps/demo-video/definitions", body=body,
                token=api.cfg.apps["demo-shop"].admin_token)[0] == 403
    status, res = send(api, "POST", "/api/v1/apps/demo-video/definitions", body=body, token=admin)
    assert status == 201, res
    try:
        assert call(api, f"/api/v1/apps/demo-video/metrics/views?{DAY}")[1]["total"] == 1
        board = call(api, f"/api/v1/apps/demo-video/dashboard?{DAY}")[1]
        assert [m["name"] for m in board["metrics"] if m["saved"]] == ["views"]
        assert call(api, "/api/v1/apps/demo-video")[1]["saved"]["metric"] == ["views"]
        assert call(api, "/api/v1/apps/demo-shop/metrics/views?range=today", app="demo-shop")[0] == 404  # not the other app's
        status, err = send(api, "POST", "/api/v1/apps/demo-video/definitions", token=admin,
                           body={**body, "name": "site_visitors"})
        assert status == 400 and "defined in tracktor.yaml" in err["error"]
        status, err = send(api, "POST", "/api/v1/apps/demo-video/definitions", token=admin,
                           body={**body, "definition_yaml": "type: [unclosed"})
        assert status == 400 and "not YAML" in err["error"]
        status, err = send(api, "POST", "/api/v1/apps/demo-video/definitions", token=admin,
                           body={**body, "definition_yaml": "type: times_event_happened"})
        assert status == 400 and "event" in err["error"]
    finally:
        status, res = send(api, "POST", "/api/v1/apps/demo-video/definitions", token=admin,
                           body={"kind": "metric", "name": "views", "definition": None})
    assert status == 200 and call(api, f"/api/v1/apps/demo-video/metrics/views?{DAY}")[0] == 404


def test_the_dashboard_page_and_its_files_carry_a_strict_content_security_policy(api):
    for path, kind in (("/", "text/html"), ("/static/dashboard.js", "text/javascript"), ("/static/dashboard.css", "text/css")):
        with urllib.request.urlopen(api.address + path, timeout=30) as resp:
            assert resp.headers["Content-Type"].startswith(kind)
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/static/../api.py", "/static/", "/static/dashboard.js/x", "/static/%2e%2e%2fapi.py"):
        assert call(api, path, token="")[0] == 404
    js = (Path(pages.STATIC) / "dashboard.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "eval(" not in js  # data only ever as text


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("text, words", [
    ("steps: [&e A, *e]", "aliases"),
    ("steps: [A, B]\n" + BOMB, "aliases"),
    ("[" * 3000 + "]" * 3000, "nests too deeply"),
    ("steps: [A, {event: B, where: [{property: p, op: eq, value: 2024-01-01}]}]", "holds a date, which is not JSON"),
    ("steps: [A, {event: B, where: [{property: p, op: eq, value: !!binary aGk=}]}]", "holds a bytes, which is not JSON"),
    ("steps: [A, {event: B, where: [{property: p, op: eq, value: .inf}]}]", "holds inf, which JSON cannot carry"),
    ("steps: [A, {event: B, where: [{property: p, op: eq, value: {1: x}}]}]", "a key that is not a string: 1"),
    ("steps: [A, {event: B, where: [{property: p, op: eq, value: " + "[" * 40 + "]" * 40 + "}]}]", "nests deeper than 32 levels"),
    ("steps: [A, {event: B, where: [{property: p, op: eq, value: [" + ",".join(["1"] * 10_001) + "]}]}]",
     "holds more than 10000 values"),
    ("- not\n- a mapping", "a YAML mapping"),
])
def test_a_definition_the_api_would_not_take_is_a_400_naming_why(api, text, words):
    status, err = call(api, "/api/v1/apps/demo-video/funnels?range=today", body={"definition_yaml": text})
    assert status == 400 and words in err["error"], err
    status, err = send(api, "POST", "/api/v1/apps/demo-video/definitions", token=api.cfg.apps["demo-video"].admin_token,
                       body={"kind": "funnel", "name": "x", "definition_yaml": text})
    assert status == 400 and words in err["error"], err


@pytest.mark.parametrize("path, status, words", [
    ("/api/v1/apps/demo-video/metrics/site_visitors?from=9999-12-31&to=9999-12-31", 400, "within 1970-01-01..2200-12-31"),
    ("/api/v1/apps/demo-video/dashboard?from=0001-01-01&to=0001-01-02", 400, "within"),
    ("/api/v1/apps/demo-video/segments?from=1969-12-31&to=1970-01-01", 400, "within"),
    ("/api/v1/apps/demo-video/people?limit=0", 400, "limit"),
    ("/api/v1/apps/demo-video/funnels/video_journey?range=today&step=1&limit=0", 400, "limit"),
    ("/api/v1/apps/demo-video/people?id=" + "x" * 300, 400, "1..256"),
])
def test_bad_dashboard_questions_get_the_reason(api, path, status, words):
    got, err = call(api, path)
    assert got == status and words in err["error"], err


def test_saved_definitions_refuse_odd_names_and_deleting_what_is_not_there(api):
    admin = api.cfg.apps["demo-video"].admin_token
    for name in (".", "..", "bell\x07", "rtl\u202eoverride", "x" * 101, ""):
        status, err = send(api, "POST", "/api/v1/apps/demo-video/definitions", token=admin,
                           body={"kind": "metric", "name": name, "definition": {"type": "people_did_event", "event": "x"}})
        assert status == 400 and "printable" in err["error"], (name, err)
    status, err = send(api, "POST", "/api/v1/apps/demo-video/definitions", token=admin,
                       body={"kind": "metric", "name": "never-saved", "definition": None})
    assert status == 404 and "no saved metric" in err["error"]


def test_methods_and_bodies_the_api_does_not_take(api):
    import socket
    assert send(api, "DELETE", "/api/v1/apps/demo-video/metrics/site_visitors", token=api.tokens["demo-video"])[0] == 405
    host, port = api.server.server_address[:2]
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
        head = sock.recv(65536).decode()
    assert head.startswith("HTTP/1.1 405") and "Allow: GET, POST, DELETE" in head and head.endswith("\r\n\r\n")
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"POST /api/v1/apps/demo-video/metrics HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection: the body it announced is not read
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 400") and "Content-Length is not a number" in answer
