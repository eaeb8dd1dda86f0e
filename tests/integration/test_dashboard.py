"""The dashboard in real headless Chromium against the running pipeline: a real broker,
identity_merge, segment_eval and metric_rollup running as `bin/tracktor job` processes, the
collector over HTTP, and `bin/tracktor serve`'s API (in this process) over the chDB warehouse
the job owns. The numbers on the pages are compared with what the command line prints.

Each page is saved as a screenshot at desktop and phone widths into .data/artifacts/dashboard/
(kept after the run, for a person to look at), and checked to fit its width."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import jobs
from tests.conftest import cli, make_config, start_job, stop_job
from tracktor import ROOT
from tracktor.analytics.api import Api
from tracktor.collector.server import Collector
from tracktor.dev import loader
from tracktor.dev.sample_data import Generator
from tracktor.topics import caught_up, ensure_topics, lag

pytestmark = pytest.mark.integration
ARTIFACTS = ROOT / ".data" / "artifacts" / "dashboard"
WIDTHS = {"desktop": 1280, "phone": 390}
APP = "demo-video"
HOSTILE = '<img src=x onerror="window.__xss=1">'
LIVE_JOBS = ("identity_merge", "segment_eval", "metric_rollup")


def _envelope(n: int, kind: str, distinct_id: str, ts: int, **fields) -> dict:
    return {"event_id": f"dash-{n}", "app": APP, "type": kind, "ts": ts, "received_at": ts, "id": distinct_id, **fields}


@pytest.fixture(scope="module")
def pipeline(kafka, tmp_path_factory):
    cfg = make_config(tmp_path_factory.mktemp("dashboard"), "dash", kafka)
    ensure_topics(kafka, cfg.kafka)
    now = int(time.time() * 1000)
    today = datetime.now(timezone.utc).date()
    start = datetime(today.year, today.month, today.day, tzinfo=timezone.utc) - timedelta(days=6)
    calls = sorted((e for e in Generator(seed=5, people=60, apps={APP: "video", "demo-shop": "shop"},
                                         start_ms=int(start.timestamp() * 1000), days=7) if e["ts"] <= now - 60_000),
                   key=lambda e: e["received_at"])
    # a person whose data would run as script if a page put it in as HTML
    calls += [_envelope(1, "set", "hostile", now - 30_000, data={"first_name": HOSTILE, "email": "h@example.com"}),
              _envelope(2, "track", "hostile", now - 29_000, action=f"Clicked {HOSTILE}", data={"html": HOSTILE})]
    loader.send(kafka, cfg.topics["raw"], calls)
    loader.send_heartbeat(kafka, cfg.topics["raw"], now - 20_000)
    running = [start_job(cfg, name) for name in LIVE_JOBS]
    collector = api = None
    try:
        groups = [{cfg.topics[role]: job.group_id(role) for role in job.inputs} for job in map(jobs.load, LIVE_JOBS)]
        deadline = time.monotonic() + 300
        while not all(caught_up(kafka, each) for each in groups):
            assert time.monotonic() < deadline, f"the jobs did not catch up in 300 s: {[lag(kafka, g) for g in groups]}"
            assert all(job.poll() is None for job in running), [job.log.read_text()[-2000:] for job in running]
            time.sleep(2)
        # the collector only now: its clock records on tracktor.raw would keep every job a record or two behind
        collector = Collector(cfg, kafka, port=0).start()
        api = Api(cfg, port=0).start()
        yield SimpleNamespace(cfg=cfg, api=api, collector=collector, kafka=kafka, start=start.date(), today=today)
    finally:
        for server in (api, collector):
            if server is not None:
                server.stop()
        for job in running:
            stop_job(job)


def report(cfg, *args) -> dict | list:
    """What `bin/tracktor report ARGS --json` prints."""
    out = cli(cfg, "report", *args, "--json", timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def wait(driver, what, check, seconds=30):
    """check(driver)'s first true value within `seconds`; else a failure showing what the page shows."""
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.2).until(lambda d: check(d))
    except TimeoutException:
        raise AssertionError(f"no {what} in {seconds} s at {driver.current_url}; the page shows:\n"
                             + driver.execute_script("return document.body.innerText")[:2000]) from None


def sign_in(driver, pipeline, app=APP, token=None):
    driver.set_window_size(WIDTHS["desktop"], 900)
    driver.get(pipeline.api.address + "/#/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(pipeline.api.address + "/#/")
    wait(driver, "the sign-in form", lambda d: d.find_elements(By.ID, "signin-app"))
    driver.find_element(By.ID, "signin-app").send_keys(app)
    driver.find_element(By.ID, "signin-token").send_keys(token or pipeline.cfg.apps[app].read_token)
    driver.find_element(By.ID, "signin-submit").click()
    if token is None:  # signed in: the page has gone on to the app's dashboard
        wait(driver, "the signed-in dashboard", lambda d: d.find_elements(By.CSS_SELECTOR, "#metrics .metric"))


def open_page(driver, pipeline, route, ready):
    driver.get(f"{pipeline.api.address}/#/{route}")
    return wait(driver, f"{ready} on #/{route}", lambda d: d.find_elements(By.CSS_SELECTOR, ready))


def texts(driver, css: str) -> list[str]:
    """The text of every element matching `css`, read at one moment (a live page may redraw between two reads)."""
    return driver.execute_script("return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", css)


def number(driver, css: str, attribute: str) -> float | None:
    """The number in `attribute` of the element matching `css` (None while there is none)."""
    value = driver.execute_script("const e = document.querySelector(arguments[0]); "
                                  "return e && e.getAttribute(arguments[1])", css, attribute)
    return None if value in (None, "") else float(value)


def click(driver, css: str) -> None:
    """Click the element matching `css`, found again if the page redrew it meanwhile."""
    def clicked(d):
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
            return True
        except (StaleElementReferenceException, NoSuchElementException):
            return False
    wait(driver, f"{css} to click", clicked)


def visible_errors(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('.error')].filter(e => !e.hidden && "
                                 "e.offsetParent !== null).map(e => e.textContent)")


def test_the_dashboard_shows_the_demo_metrics_and_funnels_with_the_numbers_the_cli_gives(browser, pipeline):
    sign_in(browser, pipeline)
    wait(browser, "the metric blocks", lambda d: d.find_elements(By.CSS_SELECTOR, "#metrics .metric"))
    metrics, funnels = browser.execute_script("""return [
        [...document.querySelectorAll('#metrics .metric')].map(c => [c.dataset.name,
            Number(c.querySelector('.headline').dataset.total), c.querySelectorAll('svg rect.bar').length]),
        [...document.querySelectorAll('#funnels .funnel')].map(f => [f.dataset.name,
            [...f.querySelectorAll('.step')].map(s => Number(s.dataset.people))])]""")
    app = pipeline.cfg.apps[APP]
    assert [name for name, _, _ in metrics] == list(app.metrics)
    for name, total, bars in metrics:
        reported = report(pipeline.cfg, "metric", name, "--app", APP, "--range", "last-7-days")
        assert total == pytest.approx(reported["total"]) and bars == 7, name  # the number, its small daily histogram
    assert [name for name, _ in funnels] == list(app.funnels)
    for name, people in funnels:
        steps = report(pipeline.cfg, "funnel", name, "--app", APP, "--range", "last-7-days")
        assert people == [s["people"] for s in steps] and people[0] > 0
    assert browser.find_elements(By.CSS_SELECTOR, "#segments .segment")
    # a metric's page: the daily chart and the daily max / min / average and people, as the CLI says
    name = next(iter(app.metrics))
    open_page(browser, pipeline, f"{APP}/metrics/{name}?range=last-7-days", "#stat-people")
    reported = report(pipeline.cfg, "metric", name, "--app", APP, "--range", "last-7-days")
    bars = browser.execute_script("return [...document.querySelectorAll('svg.daily rect.bar')].map(b => "
                                  "[b.dataset.day, b.dataset.value === '' ? null : Number(b.dataset.value)])")
    assert bars == [[d, v] for d, v in reported["days"]]  # each day, to the last digit
    stat = {k: number(browser, f"#stat-{k}", "data-value") for k in ("total", "max", "min", "avg", "people")}
    assert stat == pytest.approx({"total": reported["total"], "max": reported["daily_max"], "min": reported["daily_min"],
                                  "avg": reported["daily_avg"], "people": reported["people"]})
    assert browser.find_element(By.CSS_SELECTOR, "#stat-people .value").text == f"{reported['people']:,}"
    # a custom range applies to the page: one day only
    day = str(pipeline.today - timedelta(days=1))
    open_page(browser, pipeline, f"{APP}/metrics/{name}?from={day}&to={day}", "#stat-people")
    wait(browser, "one bar", lambda d: len(d.find_elements(By.CSS_SELECTOR, "svg.daily rect.bar")) == 1)
    assert browser.find_element(By.ID, "range-from").get_attribute("value") == day
    assert not visible_errors(browser)


def test_a_call_sent_through_the_collector_appears_on_the_dashboard_without_a_reload(browser, pipeline):
    sign_in(browser, pipeline)
    name, metric = next((n, m) for n, m in pipeline.cfg.apps[APP].metrics.items() if m.type == "people_did_event")
    card = f'#metrics .metric[data-name="{name}"] .headline'
    before = wait(browser, "the metric", lambda d: number(d, card, "data-total"))
    browser.execute_script("window.__still_this_page = true")
    sent = time.monotonic()
    loader.post_batches(pipeline.collector.address, [_envelope(
        3, "track", f"newcomer-{time.time_ns()}", int(time.time() * 1000), action=metric.event, data={})])
    wait(browser, f"{name} to count the newcomer", lambda d: number(d, card, "data-total") == before + 1, seconds=90)
    print(f"\nthe newcomer showed on the dashboard {time.monotonic() - sent:.1f} s after the collector took the call")
    assert browser.execute_script("return window.__still_this_page === true")  # no reload


def test_a_funnel_step_click_lists_the_people_the_cli_lists(browser, pipeline):
    sign_in(browser, pipeline)
    name = next(iter(pipeline.cfg.apps[APP].funnels))
    open_page(browser, pipeline, f"{APP}/funnels/{name}?range=last-7-days", "#funnel-window")  # (the dashboard has steps too)
    window = pipeline.cfg.apps[APP].funnels[name].window_seconds
    assert texts(browser, "#funnel-window")[0].startswith("Window: " + ("each person's steps within" if window else "the whole"))
    click(browser, '.steps .step[data-step="2"]')

    def listed(d):
        return texts(d, "#drill a.person") or None
    reached = wait(browser, "the people at step 2", listed)
    expected = report(pipeline.cfg, "funnel", name, "--app", APP, "--range", "last-7-days", "--people", "2")
    assert reached == [p["person"] for p in expected][:25] and reached
    click(browser, "#drill-dropped")
    dropped = report(pipeline.cfg, "funnel", name, "--app", APP, "--range", "last-7-days", "--people", "2",
                  "--dropped")
    wait(browser, "the people who dropped after step 2", lambda d: listed(d) == [p["person"] for p in dropped][:25])
    if len(expected) > 25:  # the next page
        click(browser, "#drill-reached")
        wait(browser, "the first page again", lambda d: listed(d) == reached)
        click(browser, "#page-next")
        wait(browser, "the second page", lambda d: listed(d) == [p["person"] for p in expected][25:50])


def test_a_person_search_finds_a_merged_person_by_an_old_anonymous_id(browser, pipeline):
    client = pipeline.api.warehouse()
    anon, person = client.query(
        f"SELECT distinct_id, person_id FROM {pipeline.cfg.clickhouse.database}.person_ids(app = {{app:String}}) "
        "WHERE distinct_id LIKE 'a-%' AND person_id NOT LIKE 'a-%' ORDER BY distinct_id LIMIT 1",
        parameters={"app": APP}).result_rows[0]
    sign_in(browser, pipeline)
    open_page(browser, pipeline, f"{APP}/people", "#people-q")
    browser.find_element(By.ID, "people-q").send_keys(anon)
    browser.find_element(By.CSS_SELECTOR, "#people-search button").click()
    wait(browser, f"the search to find {person} alone", lambda d: "q=" in d.current_url and
         texts(d, "tr.person-row a.person") == [person])
    click(browser, "tr.person-row a.person")
    ids = wait(browser, "the person page", lambda d: texts(d, "#person-ids .chip"))
    assert anon in ids and person in ids
    assert browser.find_elements(By.CSS_SELECTOR, "tr.event-row")  # their events, newest first
    # the old id's own address shows the same person
    open_page(browser, pipeline, f"{APP}/people/{anon}", "#merged-from")
    assert texts(browser, "h1") == [f"Person {person}"]


def test_values_from_the_data_are_shown_as_text_never_run(browser, pipeline):
    from tracktor.analytics import saved
    db, app = pipeline.cfg.clickhouse.database, pipeline.cfg.apps[APP]
    saved.save(pipeline.api.warehouse(), db, app, "metric", HOSTILE, {"type": "people_did_event", "event": "Site visit"})
    try:
        sign_in(browser, pipeline)
        for route, ready, shown in ((f"{APP}/people/hostile", "tr.event-row", f"Clicked {HOSTILE}"),   # event name, data
                                    (f"{APP}/people?q=hostile", "tr.person-row", json.dumps(HOSTILE)), # a property
                                    (APP, "#metrics .metric", HOSTILE)):                               # a metric's name
            open_page(browser, pipeline, route, ready)
            assert shown in texts(browser, "main")[0], route
            assert browser.execute_script("return window.__xss") is None, route
            assert not browser.find_elements(By.CSS_SELECTOR, "main img"), route
    finally:
        saved.save(pipeline.api.warehouse(), db, app, "metric", HOSTILE, None)


def test_another_apps_token_sees_nothing_of_this_app(browser, pipeline):
    sign_in(browser, pipeline, APP, token=pipeline.cfg.apps["demo-shop"].read_token)
    wait(browser, "the refusal", lambda d: "wrong read token" in " ".join(visible_errors(d)))
    for n, route in enumerate(("", "/people", "/segments", f"/metrics/{next(iter(pipeline.cfg.apps[APP].metrics))}",
                               "/people/hostile")):
        # the shop's token where the page keeps this app's: the API refuses it, the page shows nothing of the app
        browser.execute_script(f"sessionStorage.setItem('tracktor-read-token:{APP}', arguments[0])",
                               pipeline.cfg.apps["demo-shop"].read_token)
        browser.get(f"{pipeline.api.address}/?load={n}#/{APP}{route}")  # a page loaded afresh with that token
        wait(browser, "the sign-in form saying why", lambda d: "wrong read token" in " ".join(visible_errors(d)))
        assert not browser.find_elements(By.CSS_SELECTOR, ".metric, .person-row, .segment-row, #stat-people, .event-row")
    # the shop's own token, signed in as the shop, sees the shop's funnels and not the video app's
    sign_in(browser, pipeline, "demo-shop")
    wait(browser, "the shop's dashboard", lambda d: d.find_elements(By.CSS_SELECTOR, "#funnels .funnel"))
    names = set(browser.execute_script("return [...document.querySelectorAll('.card')].map(c => c.dataset.name)"))
    assert names & set(pipeline.cfg.apps["demo-shop"].funnels)
    assert not names & (set(pipeline.cfg.apps[APP].funnels) | set(pipeline.cfg.apps[APP].metrics))


def test_an_ad_hoc_metric_is_shown_and_then_saved_to_the_apps_definitions(browser, pipeline):
    definition = "type: times_event_happened\nevent: Site visit\n"
    expected = report(pipeline.cfg, "metric", "visits", "--app", APP, "--range", "last-7-days",
                   "--define", definition)
    sign_in(browser, pipeline)
    open_page(browser, pipeline, f"{APP}/define?range=last-7-days", "#define-yaml")
    for field, text in (("define-name", "visits"), ("define-yaml", definition)):
        browser.find_element(By.ID, field).clear()
        browser.find_element(By.ID, field).send_keys(text)
    click(browser, "#define-show")
    shown = wait(browser, "the ad hoc metric", lambda d: number(d, "#define-result #stat-total", "data-value"))
    assert shown == expected["total"] > 0
    browser.find_element(By.ID, "define-admin").send_keys("not the admin token")
    click(browser, "#define-save")
    wait(browser, "the refusal", lambda d: "wrong admin token" in " ".join(visible_errors(d)))
    browser.find_element(By.ID, "define-admin").clear()
    browser.find_element(By.ID, "define-admin").send_keys(pipeline.cfg.apps[APP].admin_token)
    click(browser, "#define-save")
    try:
        wait(browser, "the saved metric's page", lambda d: "/metrics/visits" in d.current_url and
             number(d, "#stat-total", "data-value") == expected["total"])
        open_page(browser, pipeline, APP, '#metrics .metric[data-name="visits"]')
        assert "(saved)" in texts(browser, '.metric[data-name="visits"] h2')[0]
        assert report(pipeline.cfg, "metric", "visits", "--app", APP, "--range", "last-7-days") == expected
    finally:
        from tracktor.analytics import saved
        saved.save(pipeline.api.warehouse(), pipeline.cfg.clickhouse.database, pipeline.cfg.apps[APP], "metric",
                   "visits", None)


PAGES = {
    "sign-in": ("", "#signin-token"),
    "dashboard": (APP, "#metrics .metric"),
    "metric": (f"{APP}/metrics/{{metric}}", "#stat-people"),
    "funnel": (f"{APP}/funnels/{{funnel}}?step=2", "#drill a.person"),
    "people": (f"{APP}/people", "tr.person-row"),
    "person": (f"{APP}/people/{{person}}", "tr.event-row"),
    "segments": (f"{APP}/segments", "tr.segment-row"),
    "segment": (f"{APP}/segments/{{segment}}", "#segment-members"),
    "define": (f"{APP}/define", "#define-yaml"),
}


def test_every_page_fits_desktop_and_phone_widths_and_is_saved_as_a_screenshot(browser, pipeline):
    app = pipeline.cfg.apps[APP]
    person = pipeline.api.warehouse().query(
        f"SELECT person_id FROM {pipeline.cfg.clickhouse.database}.persons FINAL WHERE app = {{app:String}} "
        "ORDER BY person_id LIMIT 1", parameters={"app": APP}).result_rows[0][0]
    names = {"metric": next(iter(app.metrics)), "funnel": next(iter(app.funnels)), "person": person,
             "segment": next(iter(app.segments))}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get_log("browser")  # what the tests before left in the console
    sign_in(browser, pipeline)
    wait(browser, "the dashboard", lambda d: d.find_elements(By.CSS_SELECTOR, "#metrics .metric"))
    for width_name, width in WIDTHS.items():
        for page, (route, ready) in PAGES.items():
            browser.set_window_size(width, 900)
            open_page(browser, pipeline, route.format(**names), ready)
            time.sleep(0.3)  # fonts and layout settle
            overflow = browser.execute_script(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert overflow[0] <= overflow[1], f"{page} is wider than the {width_name} window: {overflow}"
            height = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(width, min(height + 140, 6000))  # the whole page in one picture
            time.sleep(0.2)
            browser.save_screenshot(str(ARTIFACTS / f"{page}-{width_name}.png"))
            assert not visible_errors(browser), (page, visible_errors(browser))
    failures = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and e["source"] == "javascript"]
    assert not failures, failures  # no script error on any page
    print(f"\nscreenshots of {len(PAGES)} pages at {', '.join(WIDTHS)} widths in {ARTIFACTS}")
