"""What the collector decides, without HTTP or Kafka: reading a call's parameters, checking
its signature, and turning it into a `tracktor.raw` envelope.

Errors are `CallError(status, reason)`: 400 bad or missing parameter, 401 unknown sid,
403 signature refused.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid

from udfs.envelope import CART_METHODS, MAX_ACTION_LENGTH, MAX_ID_LENGTH

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
    raw = _get(params, "ts")
    try:
        ts = float(raw)
    except ValueError:
        raise CallError(400, f"parameter 'ts' must be a Unix timestamp, got {raw!r}") from None
    if not 0 <= ts < 1e14:
        raise CallError(400, f"parameter 'ts' is out of range: {raw!r}")
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
        return uuid.uuid4().hex
    if not isinstance(given, str) or not CLIENT_EVENT_ID.fullmatch(given):
        raise CallError(400, "parameter 'event_id' must be 16-64 letters, digits, '_' or '-'")
    return given


def envelope(method: str, params: dict, app, received_at_ms: int) -> dict:
    """The raw envelope of one call, or CallError. `app` is the sid's config.App."""
    ts = _ts_ms(params)
    base = {"event_id": _event_id(params), "app": app.sid, "ts": ts, "received_at": received_at_ms}

    def signed(identity: str, sign_param: str) -> None:
        sign = _get(params, sign_param, required=False)
        if app.signed_only and not signature_ok(app.secret, identity, sign):
            why = "missing" if not sign else "does not match"
            raise CallError(403, f"app {app.sid} accepts only signed data: {sign_param!r} {why} for {identity!r}")

    if method == "alias":
        src, dest = _identity(params, "srcid"), _identity(params, "destid")
        signed(dest, "destsign")
        return {**base, "type": "alias", "srcid": src, "destid": dest}
    distinct_id = _identity(params, "id")
    signed(distinct_id, "sign")
    if method == "track":
        action = _get(params, "action")
        if len(action) > MAX_ACTION_LENGTH:
            raise CallError(400, f"parameter 'action' is longer than {MAX_ACTION_LENGTH} characters")
        return {**base, "type": "track", "id": distinct_id, "action": action, "data": _data(params, False) or {}}
    if method == "set":
        return {**base, "type": "set", "id": distinct_id, "data": _data(params, True)}
    if method == "identify":
        previous = params.get("previous_id")
        env = {**base, "type": "identify", "id": distinct_id}
        if previous:
            env["previous_id"] = _identity(params, "previous_id")
        return env
    if method in CART_ACTION_OF:
        cart = params.get("cart", params.get("data"))
        return {**base, "type": "cart", "id": distinct_id, "cart_action": CART_ACTION_OF[method],
                "data": _data({"data": cart}, True)}
    raise CallError(400, f"unknown method {method!r}")
