"""tio.js in real headless Chromium (Debian's chromium, driven through its chromedriver by
Selenium): a page on its own origin embeds the seed's snippet, unchanged but for the
script host; the calls must arrive on the real broker through the real collector."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import make_config, read_topic
from tracktor.topics import ensure_topics
from tracktor.collector.server import Collector
from tracktor.dev.kafka_local import free_port

pytestmark = pytest.mark.integration
SID = "browser-app"

# The seed's snippet, word for word but for the script host (and the token).
SNIPPET = """<script type="text/javascript">
(function() {
window.tio = window.tio || [];
var d = document, f = d.getElementsByTagName('script')[0],
t = '%(token)s',
s = d.createElement('script'), m = ['track', 'identify','setProperties'],
r = function (e) {return function () { tio.push([e].concat(Array.prototype.slice.call(arguments, 0))) }};
s.type = 'text/javascript'; s.async = true; s.src = '%(host)s/scripts/'+t+'.js';
f.parentNode.insertBefore(s, f); for(var i in m) tio[m[i]] = r(m[i]);YS=tio; })();
</script>"""

PAGE = """<!doctype html><html><head><title>Shop</title>
<script>if (location.search.indexOf('nols') >= 0) Object.defineProperty(window, 'localStorage',
  {get: function () { throw new Error('localStorage denied'); }});</script>
%(snippet)s
<script>
tio.track('Queued before load', {n: 1});
tio.setProperties({plan: 'gold'});
tio.track('Queued before load', {n: 2});
</script></head>
<body><button id="buy">Buy</button><a class="nav" href="#x">elsewhere</a></body></html>"""


@pytest.fixture(scope="module")
def site(kafka, tmp_path_factory):
    """The collector (with auto events for the app) and a page server on another origin."""
    cfg = make_config(tmp_path_factory.mktemp("browser"), "browser")
    app = {**cfg.apps["demo-shop"].model_dump(), "sid": SID, "auto_events": {
        "page_views": [{"event": "Shop page view", "url": "/shop"}],
        "clicks": [{"event": "Buy click", "selector": "#buy"}]}}
    cfg = cfg.updated(apps=[*cfg.app_list, app])
    ensure_topics(kafka, cfg.kafka, partitions=2)
    port = free_port()
    collector = Collector(cfg, kafka, port=port).start()
    page = (PAGE % {"snippet": SNIPPET % {"token": SID, "host": f"http://127.0.0.1:{port}"}}).encode()

    class Pages(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    pages = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    state = {"cfg": cfg, "collector": collector, "port": port, "url": f"http://127.0.0.1:{pages.server_address[1]}/shop"}
    yield state
    pages.shutdown()
    state["collector"].stop()


def raw_calls(kafka, cfg, person_ids):
    return [v for _, v in read_topic(kafka, cfg.topics["raw"])
            if v.get("id") in person_ids or v.get("previous_id") in person_ids]


def settled(driver):
    """Wait until the library is loaded and has nothing left to send."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = driver.execute_script(
            "return !!(window.tio && window.tio.__tracktor) && "
            "(function(){ try { return !localStorage.getItem('tio:%s:pending'); } catch (e) { return true; } })()" % SID)
        if done:
            return
        time.sleep(0.1)
    raise AssertionError("tio.js did not send its calls within 30 s")


def test_calls_queued_before_load_and_the_anonymous_id_survive_and_arrive(browser, site, kafka):
    browser.get(site["url"])
    settled(browser)
    anon = browser.execute_script("return tio.personId()")
    assert anon.startswith("a-") and len(anon) == 25 and anon[2:].isalnum()
    browser.refresh()
    settled(browser)
    assert browser.execute_script("return tio.personId()") == anon  # kept in localStorage

    calls = raw_calls(kafka, site["cfg"], {anon})
    queued = [(c["type"], c.get("action"), c.get("data")) for c in calls]
    # each load: the page's three queued calls in their order, then the auto page view
    assert len(queued) == 8
    for load in (queued[:4], queued[4:]):
        assert load[:3] == [("track", "Queued before load", {"n": 1}), ("set", None, {"plan": "gold"}),
                            ("track", "Queued before load", {"n": 2})]
        assert load[3][:2] == ("track", "Shop page view") and load[3][2]["path"] == "/shop"
    assert all(c["app"] == SID for c in calls)


def test_identify_properties_events_carts_and_clicks_arrive(browser, site, kafka):
    browser.get(site["url"])
    settled(browser)
    anon = browser.execute_script("return tio.personId()")
    cart = {"totalprice": 3.98, "products": [{"name": "Marshmallows 1kg pack", "price": 1.99, "color": "green"},
                                              {"name": "Zephir 1kg pack", "price": 1.99}]}
    browser.execute_script("""
        tio.identify('browser-user-1');
        tio.setProperties({email: 'b1@example.com', age: 25, delete_me: null});
        tio.track('rated-product', {productid: 33156, rating: 5});
        tio.setCart(arguments[0]); tio.cancelCart(arguments[0]); tio.purchaseCart(arguments[0]);
        document.getElementById('buy').click();
    """, cart)
    settled(browser)
    calls = raw_calls(kafka, site["cfg"], {anon, "browser-user-1"})
    identify = [c for c in calls if c["type"] == "identify"]
    assert identify == [dict(identify[0], id="browser-user-1", previous_id=anon)]  # anonymous → merged
    mine = [c for c in calls if c.get("id") == "browser-user-1" and c["type"] != "identify"]
    assert [(c["type"], c.get("action") or c.get("cart_action")) for c in mine] == [
        ("set", None), ("track", "rated-product"), ("cart", "set"), ("cart", "cancel"), ("cart", "purchase"),
        ("track", "Buy click")]
    assert mine[0]["data"] == {"email": "b1@example.com", "age": 25, "delete_me": None}
    assert mine[2]["data"] == cart and mine[5]["data"]["selector"] == "#buy"
    assert browser.execute_script("return tio.personId()") == "browser-user-1"


def test_a_collector_that_is_briefly_down_loses_nothing(browser, site, kafka):
    browser.get(site["url"])
    settled(browser)
    who = browser.execute_script("return tio.personId()")
    site["collector"].stop()
    browser.execute_script("tio.track('While down', {k: 1}); tio.track('While down', {k: 2});")
    time.sleep(2.5)  # the library fails, backs off and keeps the calls
    assert browser.execute_script("return localStorage.getItem('tio:%s:pending')" % SID) is not None
    site["collector"] = Collector(site["cfg"], kafka, port=site["port"]).start()
    settled(browser)
    down = [c["data"]["k"] for c in raw_calls(kafka, site["cfg"], {who}) if c.get("action") == "While down"]
    assert down == [1, 2]  # each once: a retried batch carries the same event ids


def test_without_localstorage_the_id_lives_in_a_cookie(browser, site, kafka):
    browser.delete_all_cookies()
    browser.get(site["url"] + "?nols=1")
    settled(browser)
    anon = browser.execute_script("return tio.personId()")
    browser.refresh()
    settled(browser)
    assert browser.execute_script("return tio.personId()") == anon
    assert any(c["name"].startswith("tio%3A") or c["name"].startswith("tio:") for c in browser.get_cookies())
    deadline = time.monotonic() + 20
    while len([c for c in raw_calls(kafka, site["cfg"], {anon}) if c.get("action") == "Queued before load"]) < 4:
        assert time.monotonic() < deadline, "the cookie-mode calls did not arrive"
        time.sleep(0.5)
