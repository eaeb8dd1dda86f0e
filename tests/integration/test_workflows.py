"""Workflow campaigns end to end on real Kafka, Flink and ClickHouse (bounded runs), with a
real SMTP server (aiosmtpd) and a real HTTP webhook receiver on loopback, and the collector
serving the letters' tracking links: the seed's campaign, an abandoned cart's reminder whose
link click is counted, a newsletter to a segment while the SMTP server is down for a while,
replays and a second delivery process that perform nothing twice, malformed requests.
test_workflows_live.py has the runner killed during a delay and restarted."""
from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import urllib.request
from email import message_from_bytes
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import BEGINNING, ONE_MINUTE, make_config, read_topic, run_jobs
from tests.test_workflows import SEED
from tracktor import warehouse
from tracktor.analytics import queries
from tracktor.collector.server import Collector
from tracktor.delivery import newsletter
from tracktor.delivery.service import Delivery
from tracktor.dev import envelopes as E, loader
from tracktor.topics import ensure_topics

pytestmark = pytest.mark.integration
VIDEO, SHOP = "demo-video", "demo-shop"
REMINDER = {"trigger": {"event": "Cart abandoned"}, "start": "remind", "blocks": {
    "remind": {"letter": {"name": "cart_reminder", "subject": "{{name}}, your cart is waiting",
                          "body": '<p>Hi {{name}}! <a href="https://shop.example/cart?x=1&amp;y=2">Back to it</a></p>'},
               "next": "later"},
    "later": {"wait": "1h", "next": "crm"},
    "crm": {"webhook": {"url": "WEBHOOK", "payload": {"email": "{{email}}", "reason": "cart"}}}}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content, policy=email_policy))
        return "250 OK"


class Receiver(BaseHTTPRequestHandler):
    calls: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.calls.append((self.headers.get("Idempotency-Key"), json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def wait_until(check, seconds=60, what="it"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen in {seconds} s")


@pytest.fixture(scope="module")
def world(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workflows")
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    smtp_port = free_port()
    cfg = make_config(tmp, "wf", bootstrap_servers=kafka, sections={"delivery": {"smtp": {"host": "127.0.0.1", "port": smtp_port},
                                                        "backoff": 0.5, "max_backoff": 2, "max_attempts": 30}})
    apps = [a.model_dump() for a in cfg.app_list]
    for a in apps:
        if a["sid"] == VIDEO:
            a["campaigns"] = {"free_movie_fans": SEED}
            a["segments"] = {**a["segments"], "free_plan": {"where": {"property": "plan", "op": "eq", "value": "free"}}}
        if a["sid"] == SHOP:
            a["cart_timeout"] = 120
            reminder = json.loads(json.dumps(REMINDER).replace("WEBHOOK", f"http://127.0.0.1:{hook.server_port}/crm"))
            a["campaigns"] = {"cart_reminder": reminder}
    cfg = cfg.updated(apps=apps)
    ensure_topics(kafka, cfg.kafka)
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    world = {"cfg": cfg, "kafka": kafka, "mailbox": mailbox, "smtp": smtp, "smtp_port": smtp_port,
             "hook_port": hook.server_port}
    yield world
    if "collector" in world:
        world["collector"].stop()
    world["smtp"].stop(no_assert=True)
    hook.shutdown()


@pytest.fixture(scope="module")
def first_run(world):
    cfg, kafka = world["cfg"], world["kafka"]
    calls = [E.set_properties(VIDEO, "ann", {"plan": "free", "name": "Ann", "email": "ann@example.com"}, BEGINNING),
             E.set_properties(VIDEO, "bob", {"plan": "premium", "name": "Bob", "email": "bob@example.com"}, BEGINNING),
             E.set_properties(SHOP, "carl", {"name": "Carl", "email": "carl@example.com"}, BEGINNING)]
    calls += [E.track(VIDEO, who, "Movie watch", BEGINNING + i * ONE_MINUTE) for i in range(1, 21) for who in ("ann", "bob")]
    calls.append(E.cart(SHOP, "carl", "set", {"totalprice": 5, "products": [{"name": "Tea", "price": 5}]}, BEGINNING))
    loader.send(kafka, cfg.topics["raw"], calls)
    loader.send_heartbeat(kafka, cfg.topics["raw"], BEGINNING + 30 * ONE_MINUTE)
    run_jobs(cfg, kafka)
    # the collector serves the letters' links from now on (its heartbeats move the jobs' clock
    # to the wall clock: before the first run, the scenario's own times would mean nothing)
    world["collector"] = Collector(cfg, kafka, port=0).start()
    world["cfg"] = cfg = cfg.updated(delivery={"tracking_url": world["collector"].address})
    delivery = Delivery(cfg, kafka).start()
    wait_until(lambda: len(world["mailbox"].messages) >= 2, what="two letters")
    yield delivery
    delivery.stop()


def letter_to(world, address):
    return [m for m in world["mailbox"].messages if m["To"] == address]


def test_the_seeds_campaign_sends_one_letter_with_the_name_filled_in(world, first_run):
    ann = letter_to(world, "ann@example.com")
    assert len(ann) == 1 and not letter_to(world, "bob@example.com")  # bob is on the premium plan
    assert ann[0]["Subject"] == "A present for you, Ann"
    assert "Hi Ann" in ann[0].get_body(("html",)).get_content()


def test_a_reminder_letters_click_is_counted_and_its_delay_fires_once(world, first_run):
    cfg, kafka = world["cfg"], world["kafka"]
    (carl,) = letter_to(world, "carl@example.com")
    assert carl["Subject"] == "Carl, your cart is waiting"
    html = carl.get_body(("html",)).get_content()
    link = re.search(r'href="([^"]+/c/[^"]+)"', html).group(1)
    pixel = re.search(r'src="([^"]+/o/[^"]+)"', html).group(1)
    assert urllib.request.urlopen(pixel).read().startswith(b"GIF89a")
    opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                              {"redirect_request": lambda *a, **k: None}))
    with pytest.raises(urllib.error.HTTPError) as got:
        opener.open(link)
    assert got.value.code == 302 and got.value.headers["Location"] == "https://shop.example/cart?x=1&y=2"
    base, token = link.split("/c/")
    payload, mac = token.split(".")
    other_app = base64.urlsafe_b64encode(base64.urlsafe_b64decode(payload + "==").replace(
        b'"a":"demo-shop"', b'"a":"demo-video"')).rstrip(b"=").decode()
    for hostile, status in [(f"{base}/c/{payload}.{mac[:-3]}AAA", 403),      # another signature
                            (f"{base}/c/{other_app}.{mac}", 403),             # the link moved to another app
                            (f"{base}/o/{token}", 400),                        # a click token as a pixel
                            (f"{base}/c/%E6%97%A5%E6%9C%AC.x", 400),           # not base64, not ASCII
                            (f"{base}/c/{'A' * 5000}.B", 400),                 # too long
                            (f"{base}/c/bm90IGpzb24.AAAA", 400),               # "not json"
                            (f"{base}/c/WzFd.AAAA", 400)]:                     # [1]: JSON, not an object
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(hostile)
        assert refused.value.code == status, (hostile[:120], refused.value.code)
        assert json.loads(refused.value.read())["error"]
    assert not Receiver.calls  # the hour has not passed on the log's clock
    # the jobs run again, replaying their inputs (bounded), now on the collector's clock: the
    # hour has passed; the actions written again by the replay are not performed again
    run_jobs(cfg, kafka)
    wait_until(lambda: Receiver.calls, what="the webhook")
    time.sleep(2)
    assert len(Receiver.calls) == 1
    key, body = Receiver.calls[0]
    assert body["data"] == {"email": "carl@example.com", "reason": "cart"} and body["campaign"] == "cart_reminder"
    assert key == body["action_id"]
    requests = [r for _, r in read_topic(kafka, cfg.topics["actions"], 5000)]
    assert len(requests) > len({r["action_id"] for r in requests})  # the replay wrote them again...
    assert len(letter_to(world, "carl@example.com")) == len(letter_to(world, "ann@example.com")) == 1  # ...sent once
    wait_until(lambda: any(r["event"] == "Webhook called" for _, r in read_topic(kafka, cfg.topics["derived"], 5000)),
               what="the webhook's outcome")
    run_jobs(cfg, kafka, "metric_rollup")
    client = warehouse.connect(cfg.clickhouse)
    try:
        c = queries.campaign(client, cfg.clickhouse.database, SHOP, "cart_reminder")
    finally:
        client.close()
    assert {b["block"]: b["entered"] for b in c.blocks} == {"remind": 1, "later": 1, "crm": 1}
    assert [(x["letter"], x["sent"], x["opened"], x["clicked"], x["bounced"]) for x in c.letters] == \
        [("cart_reminder", 1, 1, 1, 0)]
    assert [(a["status"], a["email"], a["opens"], a["clicks"]) for a in c.activity] == \
        [("clicked", "carl@example.com", 1, 1)]


def test_a_newsletter_to_a_segment_waits_out_the_smtp_server_and_is_sent_once(world, first_run):
    cfg, kafka = world["cfg"], world["kafka"]
    run_jobs(cfg, kafka, "metric_rollup")
    before = len(world["mailbox"].messages)
    world["smtp"].stop(no_assert=True)
    client = warehouse.connect(cfg.clickhouse)
    try:
        assert newsletter.send(cfg, client, VIDEO, "spring", "Spring news for {{name}}", "<p>Hello</p>",
                               ("free_plan",)) == 1
        time.sleep(3)  # delivery tries and waits meanwhile
        assert len(world["mailbox"].messages) == before
        world["smtp"] = Controller(world["mailbox"], hostname="127.0.0.1", port=world["smtp_port"])
        world["smtp"].start()
        wait_until(lambda: len(world["mailbox"].messages) == before + 1, what="the newsletter")
        assert world["mailbox"].messages[-1]["To"] == "ann@example.com"
        assert world["mailbox"].messages[-1]["Subject"] == "Spring news for Ann"
        # sent again, and every request read again by a new delivery process: nothing more is sent
        assert newsletter.send(cfg, client, VIDEO, "spring", "Spring news for {{name}}", "<p>Hello</p>",
                               ("free_plan",)) == 1
        first_run.stop()
        again = Delivery(cfg, kafka, group="tracktor-deliver-again").start()
        time.sleep(8)
        again.stop()
        assert len(world["mailbox"].messages) == before + 1 and again.performed == 0
        sent = [r for _, r in read_topic(kafka, cfg.topics["derived"], 5000) if r["event"] == "Letter sent"]
        assert len(sent) == len({r["event_id"] for r in sent}) == 3  # ann's offer, carl's reminder, the newsletter
    finally:
        client.close()


def test_a_malformed_action_request_is_a_dead_letter_and_delivery_goes_on(world, first_run):
    cfg, kafka = world["cfg"], world["kafka"]
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": kafka})
    p.produce(cfg.topics["actions"], b'{"action_id": "x", "kind": "letter"}', b"k")
    p.produce(cfg.topics["actions"], b"not json", b"k")
    p.produce(cfg.topics["actions"], json.dumps({
        "action_id": "after-the-bad-ones", "app": SHOP, "campaign": "manual", "block": "b", "kind": "webhook",
        "person_id": "carl", "ts": 0, "webhook": {"url": f"http://127.0.0.1:{world['hook_port']}/after",
                                                   "payload": {"n": 1}}}).encode(), f"{SHOP}:carl".encode())
    p.flush(10)
    d = Delivery(cfg, kafka, group="tracktor-deliver-bad").start()
    try:
        wait_until(lambda: len([r for _, r in read_topic(kafka, cfg.topics["dead_letter"], 5000)
                                if r.get("job") == "deliver"]) >= 2, what="two dead letters")
    finally:
        d.stop()
    wait_until(lambda: any(key == "after-the-bad-ones" for key, _ in Receiver.calls), what="the good request after them")
    reasons = [r["reason"] for _, r in read_topic(kafka, cfg.topics["dead_letter"], 5000) if r.get("job") == "deliver"]
    assert any("'app' must be a non-empty string" in r for r in reasons) and any(r.startswith("not JSON") for r in reasons)
