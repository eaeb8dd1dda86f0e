"""What the collector decides, without HTTP or Kafka: reading a call's parameters, checking
its signature, and turning it into a `tracktor.raw` envelope.

Errors are `CallError(status, reason)`: 400 bad or missing parameter, 401 unknown sid,
403 signature refused.
"""
from __future__ import annotations

import codecs
import hashlib
import hmac
import json
import re
from urllib.parse import unquote_plus

from udfs.envelope import CART_METHODS, MAX_ACTION_LENGTH, MAX_ID_LENGTH, new_event_id

CART_ACTION_OF = {method: action for action, method in CART_METHODS.items()}  # setCart -> set


class CallError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def signature(secret: str, identity: str) -> str:
    """HMAC-SHA256(secret, identity) in upper-case hex, as the seed's C# example makes it."""
    return hmac.new(secret.encode(), identity.encode(), hashlib.sha256).hexdigest().upper()


def signature_ok(secret: str, identity: str, sign: str | None) -> bool:
    """Case-insensitive, constant-time comparison."""
    if not sign:
        return False
    return hmac.compare_digest(signature(secret, identity).encode(), sign.strip().upper().encode())


# -- the seed writes `data` JavaScript-style: {billing_plan:'Gold'} ---------------------
_TOKEN = re.compile(r"""\s*(?:
    (?P<punct>[{}\[\]:,])
  | (?P<dq>"(?:[^"\\]|\\.)*")
  | (?P<sq>'(?:[^'\\]|\\.)*')
  | (?P<num>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_$][\w$]*)
)""", re.VERBOSE)


def _tokens(text: str):
    pos, end = 0, len(text)
    while pos < end:
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                return
            raise ValueError(f"unexpected character at {pos}: {text[pos:pos + 10]!r}")
        pos = m.end()
        kind = m.lastgroup
        yield kind, m.group(kind)


def _single_to_json(s: str) -> str:
    body = s[1:-1].replace('\\\'', "'").replace('"', '\\"')
    return '"' + body + '"'


def parse_data(text: str) -> dict:
    """A JSON object, or the same written JavaScript-style (bare keys, 'single quotes')."""
    try:
        value = json.loads(text)
    except ValueError:
        out = []
        for kind, tok in _tokens(text):
            if kind == "sq":
                out.append(_single_to_json(tok))
            elif kind == "word":
                out.append(tok if tok in ("true", "false", "null") else json.dumps(tok))
            else:
                out.append(tok)
        value = json.loads("".join(out))
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


# -- reading parameters --------------------------------------------------------------
def _unquote(value: str) -> str:
    """unquote_plus, in C for the usual ASCII text: `%XX` become `\\xXX` escapes that
    codecs.escape_decode reads (unquote_plus was a tenth of a GET request's time)."""
    if "%" not in value:
        return value.replace("+", " ")
    if value.isascii():
        escaped = value.replace("\\", "\\\\").replace("%", "\\x").replace("+", " ")
        try:
            return codecs.escape_decode(escaped.encode())[0].decode("utf-8", "replace")
        except ValueError:  # a % without two hex digits: unquote_plus keeps it as it is
            pass
    return unquote_plus(value)


def query_params(text: str) -> dict[str, str]:
    """URL query parameters (the last of repeated ones), decoding only what is encoded:
    parse_qsl's cost was a third of a GET request's."""
    params = {}
    for part in text.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        params[_unquote(key)] = _unquote(value)
    return params


def _get(params: dict, name: str, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise CallError(400, f"missing parameter {name!r}")
        return None
    if not isinstance(value, str):
        value = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if value is None:
            raise CallError(400, f"parameter {name!r} must be a string")
    return value


def _identity(params: dict, name: str) -> str:
    value = _get(params, name)
    if len(value) > MAX_ID_LENGTH:
        raise CallError(400, f"parameter {name!r} is longer than {MAX_ID_LENGTH} characters")
    return value


def _ts_ms(params: dict) -> int:
    ts = params.get("ts")
    if type(ts) is not int:  # the JavaScript library sends integers; URLs send text
        raw = _get(params, "ts")
        try:
            ts = float(raw)
        except ValueError:
            raise CallError(400, f"parameter 'ts' must be a Unix timestamp, got {raw!r}") from None
    if not 0 <= ts < 1e14:
        raise CallError(400, f"parameter 'ts' is out of range: {params.get('ts')!r}")
    return int(ts if ts >= 1e11 else ts * 1000)  # seconds as the seed sends them, or ms


def _data(params: dict, required: bool) -> dict | None:
    value = params.get("data")
    if value is None or value == "":
        if required:
            raise CallError(400, "missing parameter 'data'")
        return None
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise CallError(400, f"parameter 'data' must be a JSON object, got {type(value).__name__}")
    try:
        return parse_data(value)
    except ValueError as e:
        raise CallError(400, f"parameter 'data' is not a JSON object: {e}") from None


def method_of(path_method: str, params: dict) -> str:
    """The call a request makes. The seed's own examples send a property update and an alias
    to /track: data without action is a set, srcid+destid an alias."""
    if path_method == "track":
        if params.get("srcid") and params.get("destid"):
            return "alias"
        if not params.get("action") and params.get("data"):
            return "set"
    return path_method


CLIENT_EVENT_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


def _event_id(params: dict) -> str:
    """The client's own event id (the JavaScript library sends one, so that a batch it retries
    after a lost answer collapses downstream), or a new one."""
    given = params.get("event_id")
    if given is None or given == "":
        return new_event_id()
    if not isinstance(given, str) or not CLIENT_EVENT_ID.fullmatch(given):
        raise CallError(400, "parameter 'event_id' must be 16-64 letters, digits, '_' or '-'")
    return given


def _check_signature(app, params: dict, identity: str, sign_param: str) -> None:
    sign = _get(params, sign_param, required=False)
    if not signature_ok(app.secret, identity, sign):
        why = "missing" if not sign else "does not match"
        raise CallError(403, f"app {app.sid} accepts only signed data: {sign_param!r} {why} for {identity!r}")


def envelope(method: str, params: dict, app, received_at_ms: int) -> dict:
    """The raw envelope of one call, or CallError. `app` is the sid's config.App."""
    ts = _ts_ms(params)
    event_id = _event_id(params)
    if method == "alias":
        src, dest = _identity(params, "srcid"), _identity(params, "destid")
        if app.signed_only:
            _check_signature(app, params, dest, "destsign")
        return {"event_id": event_id, "app": app.sid, "ts": ts, "received_at": received_at_ms,
                "type": "alias", "srcid": src, "destid": dest}
    distinct_id = _identity(params, "id")
    if app.signed_only:
        _check_signature(app, params, distinct_id, "sign")
    env = {"event_id": event_id, "app": app.sid, "ts": ts, "received_at": received_at_ms, "type": method, "id": distinct_id}
    if method == "track":
        action = _get(params, "action")
        if len(action) > MAX_ACTION_LENGTH:
            raise CallError(400, f"parameter 'action' is longer than {MAX_ACTION_LENGTH} characters")
        env["action"] = action
        env["data"] = _data(params, False) or {}
    elif method == "set":
        env["data"] = _data(params, True)
    elif method == "identify":
        if params.get("previous_id"):
            env["previous_id"] = _identity(params, "previous_id")
    elif method in CART_ACTION_OF:
        env["type"], env["cart_action"] = "cart", CART_ACTION_OF[method]
        env["data"] = _data({"data": params.get("cart", params.get("data"))}, True)
    else:
        raise CallError(400, f"unknown method {method!r}")
    return env
