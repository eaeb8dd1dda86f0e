"""Delivery's parts without Kafka: which requests it refuses, how it tells a refusal from a
failure worth another attempt (against a real SMTP server and a real HTTP server on
loopback), and that one state file serves one process."""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from tracktor.config.settings import SmtpSettings
from tracktor.delivery import senders
from tracktor.delivery.service import BadRequest, check_request
from tracktor.delivery.store import Store

GOOD = {"action_id": "a1", "app": "demo-shop", "campaign": "c", "block": "b", "kind": "webhook", "person_id": "p",
        "ts": 0, "webhook": {"url": "http://127.0.0.1:9/", "payload": {}}}


@pytest.mark.parametrize("change, says", [
    ({"action_id": ""}, "'action_id' must be a non-empty string"),
    ({"action_id": "a\r\nBcc: x@y"}, "action_id must be 1-64"),
    ({"kind": "fax"}, "kind must be one of"),
    ({"webhook": "http://x"}, "needs 'webhook', an object"),
    ({"webhook": {"url": "file:///etc/passwd"}}, "must start with http"),
    ({"kind": "letter", "letter": {"subject": 1, "html": "", "name": "n"}}, "letter.subject must be a string"),
    ({"app": None}, "'app' must be a non-empty string"),
])
def test_malformed_requests_are_refused_naming_the_fault(change, says):
    with pytest.raises(BadRequest, match=says.replace("(", r"\(")):
        check_request({**GOOD, **change})
    with pytest.raises(BadRequest):
        check_request([GOOD])


def test_a_letter_without_an_address_or_with_a_line_break_in_a_header_is_refused():
    smtp = SmtpSettings()
    for to in (None, "", "not an address", 42):
        with pytest.raises(senders.Refused, match="no email address"):
            senders.letter(smtp, to, "s", "<p>x</p>", "id")
    with pytest.raises(senders.Refused, match="headers are not valid"):
        senders.letter(smtp, "a@example.com", "Hi\r\nBcc: victim@example.com", "<p>x</p>", "id")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Answering:
    def __init__(self, code: str):
        self.code = code

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return self.code


@pytest.mark.parametrize("reply, outcome", [("550 no such user", senders.Refused),
                                            ("451 try later", senders.Unavailable)])
def test_an_smtp_servers_5xx_is_a_refusal_and_its_4xx_worth_another_attempt(reply, outcome):
    port = free_port()
    server = Controller(Answering(reply), hostname="127.0.0.1", port=port)
    server.start()
    try:
        smtp = SmtpSettings(port=port)
        with pytest.raises(outcome, match=reply.split()[0]):
            senders.send_letter(smtp, senders.letter(smtp, "a@example.com", "s", "<p>x</p>", "id"))
    finally:
        server.stop()
    with pytest.raises(senders.Unavailable):  # and no server at all
        senders.send_letter(SmtpSettings(port=port, timeout=2), senders.letter(smtp, "a@example.com", "s", "x", "id"))


class Status(BaseHTTPRequestHandler):
    def do_POST(self):
        code = int(self.path.strip("/"))
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("code, outcome", [(200, None), (204, None), (400, senders.Refused), (404, senders.Refused),
                                           (302, senders.Refused), (408, senders.Unavailable),
                                           (429, senders.Unavailable), (500, senders.Unavailable),
                                           (503, senders.Unavailable)])
def test_a_webhooks_answer_decides_between_done_refused_and_another_attempt(code, outcome):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{code}"
        if outcome is None:
            assert senders.call_webhook(url, {"x": 1}, "id", 5) == code
        else:
            with pytest.raises(outcome, match=str(code)):
                senders.call_webhook(url, {"x": 1}, "id", 5)
    finally:
        server.shutdown()


def test_one_state_file_serves_one_delivery_process(tmp_path):
    first = Store(tmp_path / "delivery.sqlite")
    with pytest.raises(RuntimeError, match="another delivery process"):
        Store(tmp_path / "delivery.sqlite")
    first.performed("a1", [["derived", "k", {"event": "Letter sent"}]], 1)
    assert first.get("a1") == ([["derived", "k", {"event": "Letter sent"}]], False)
    first.published(["a1"])
    first.close()
    again = Store(tmp_path / "delivery.sqlite")  # free again once closed
    assert again.get("a1")[1] is True and again.get("nope") is None
    again.close()
