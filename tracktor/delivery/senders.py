"""Sending one letter over SMTP and calling one webhook. Each either returns, or raises
`Refused` (the other side said no for good: a bounce, a 4xx) or `Unavailable` (worth
another attempt: no connection, a timeout, an SMTP 4xx, an HTTP 5xx or 429)."""
from __future__ import annotations

import re
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage
from html.parser import HTMLParser

import orjson

EMAIL = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")


class Refused(Exception):
    pass


class Unavailable(Exception):
    pass


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data):
        self.parts.append(data)


def plain_text(html: str) -> str:
    """The letter's text part: its HTML without the markup."""
    p = _Text()
    p.feed(html)
    return " ".join(" ".join(p.parts).split())


def letter(smtp, to: str | None, subject: str, html: str, message_id: str) -> EmailMessage:
    """The MIME message, or Refused when it cannot be one (no address, a header that would
    carry a line break)."""
    if not isinstance(to, str) or not EMAIL.fullmatch(to):
        raise Refused(f"the person has no email address ({'email property not set' if not to else repr(str(to)[:100])})")
    msg = EmailMessage()
    try:
        msg["From"], msg["To"], msg["Subject"] = smtp.sender, to, subject
        msg["Message-ID"] = f"<{message_id}@tracktor>"  # the same for a letter sent again: recipients can drop it
    except ValueError as e:
        raise Refused(f"the letter's headers are not valid: {e}") from None
    msg.set_content(plain_text(html))
    msg.add_alternative(html, subtype="html")
    return msg


def send_letter(smtp, msg: EmailMessage) -> None:
    try:
        cls = smtplib.SMTP_SSL if smtp.tls == "ssl" else smtplib.SMTP
        with cls(smtp.host, smtp.port, timeout=smtp.timeout) as s:
            if smtp.tls == "starttls":
                s.starttls()
            if smtp.username:
                s.login(smtp.username, smtp.password or "")
            s.send_message(msg)
    except smtplib.SMTPNotSupportedError as e:
        raise Refused(f"SMTP server {smtp.host}:{smtp.port}: {e}") from None
    except smtplib.SMTPRecipientsRefused as e:
        code, reply = next(iter(e.recipients.values()))
        raise (Refused if code >= 500 else Unavailable)(f"SMTP {code} {_text(reply)}") from None
    except smtplib.SMTPResponseException as e:
        raise (Refused if e.smtp_code >= 500 else Unavailable)(f"SMTP {e.smtp_code} {_text(e.smtp_error)}") from None
    except (OSError, smtplib.SMTPException) as e:
        raise Unavailable(f"SMTP server {smtp.host}:{smtp.port}: {e}") from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a webhook that redirects is answered as refused: its POST is not re-sent elsewhere


_opener = urllib.request.build_opener(_NoRedirects)


def call_webhook(url: str, body: dict, action_id: str, timeout: float) -> int:
    """POST the body as JSON; the HTTP status of a 2xx answer."""
    req = urllib.request.Request(url, data=orjson.dumps(body), method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "tracktor-deliver", "Idempotency-Key": action_id})
    try:
        with _opener.open(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        retry = e.code in (408, 429) or e.code >= 500
        raise (Unavailable if retry else Refused)(f"HTTP {e.code} from {url[:200]}") from None
    except (OSError, ValueError) as e:
        raise Unavailable(f"{url[:200]}: {getattr(e, 'reason', e)}") from None


def _text(reply) -> str:
    return (reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply))[:300]
