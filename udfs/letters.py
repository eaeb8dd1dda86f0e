"""Letters: templates filled in from a person's properties, and the signed tracking links
(open pixel `/o/TOKEN`, clicks `/c/TOKEN`) the collector serves (docs/workflows.md).

A token is `payload.signature`, both base64url: the payload is JSON naming the app, the
person, the action (the letter sent), its campaign and letter and, for a click, the link's
address; the signature is HMAC-SHA256 over the payload with a key derived from the app's secret, so a
token cannot be forged or changed (and a click link cannot be made to redirect anywhere else).
A link's address is percent-encoded to printable ASCII before it is signed.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
from urllib.parse import quote

import orjson

MAX_TOKEN_CHARS = 4096
_FIELD = re.compile(r"\{\{\s*([^{}|\s]+)\s*(?:\|\s*([^{}]*?)\s*)?\}\}")
_LINK = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"']+)\2""", re.IGNORECASE)


def render(template: str, props: dict, as_html: bool = False) -> str:
    """`{{name}}` (or `{{name | default}}`) replaced by the person's property; in HTML the
    value is escaped, so a property cannot add markup to a letter."""
    def value(m: re.Match) -> str:
        v = props.get(m.group(1))
        if v is None:
            text = m.group(2) or ""
        else:
            text = v if isinstance(v, str) else orjson.dumps(v).decode()
        return html.escape(text) if as_html else text
    return _FIELD.sub(value, template)


def render_values(node, props: dict):
    """A webhook's payload or an event's data: every string in it rendered."""
    if isinstance(node, str):
        return render(node, props)
    if isinstance(node, dict):
        return {k: render_values(v, props) for k, v in node.items()}
    if isinstance(node, list):
        return [render_values(v, props) for v in node]
    return node


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: str) -> bytes:
    """The links' own key, derived from the app's secret: the secret itself signs identities
    (HMAC of an id), so an app signing ids its users choose could otherwise be made to sign
    a token."""
    return hmac.new(secret.encode(), b"tracktor-letter-links-v1", hashlib.sha256).digest()


def _mac(secret: str, payload: str) -> bytes:
    return hmac.new(_key(secret), payload.encode(), hashlib.sha256).digest()[:16]


def safe_url(url: str) -> str:
    """The address as a Location header may carry it: characters outside printable ASCII
    percent-encoded (UTF-8), so no line break or other control character gets through."""
    return quote(url, safe="!#$%&'()*+,/:;=?@[]~-._")


def sign(secret: str, fields: dict) -> str:
    payload = _b64(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS))
    return f"{payload}.{_b64(_mac(secret, payload))}"


def token_app(token: str) -> str:
    """The app a token names (unverified: to find the secret to verify it with), or ValueError."""
    return _fields(token)["a"]


def verify(secret: str, token: str) -> dict:
    """The token's fields, or ValueError when it is malformed or not signed with `secret`."""
    fields = _fields(token)
    payload, _, mac = token.partition(".")
    want = _mac(secret, payload)
    try:
        given = _unb64(mac)
    except ValueError:
        raise ValueError("the link's signature is not base64url") from None
    if not hmac.compare_digest(want, given):
        raise ValueError("the link's signature does not match")
    return fields


def _fields(token: str) -> dict:
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise ValueError("not a tracking link")
    try:
        fields = orjson.loads(_unb64(token.partition(".")[0]))
    except (ValueError, orjson.JSONDecodeError):
        raise ValueError("not a tracking link") from None
    if not isinstance(fields, dict) or not all(isinstance(fields.get(k), str) and fields[k]
                                               for k in ("a", "p", "id", "c", "l")):
        raise ValueError("not a tracking link")
    if "u" in fields and not (isinstance(fields["u"], str) and fields["u"].startswith(("http://", "https://"))
                              and fields["u"] == safe_url(fields["u"])):
        raise ValueError("not a tracking link")
    return fields


def tracked(body: str, base_url: str, secret: str, fields: dict) -> str:
    """The letter's HTML with each http(s) link going through `/c/` and an open pixel at the end."""
    def link(m: re.Match) -> str:
        token = sign(secret, {**fields, "u": safe_url(html.unescape(m.group(3)))})
        if len(token) > MAX_TOKEN_CHARS:
            return m.group(0)  # too long an address to carry: the link stays as it is, untracked
        return f'{m.group(1)}{m.group(2)}{base_url}/c/{token}{m.group(2)}'
    pixel = f'<img src="{base_url}/o/{sign(secret, fields)}" width="1" height="1" alt="">'
    return _LINK.sub(link, body) + pixel
