"""What the collector decides, without HTTP or Kafka: reading a call's parameters, checking
its signatures and limits (udfs/limits.py), and turning it into a `tracktor.raw` envelope.

Errors are `CallError(status, reason)`: 400 bad or missing parameter, 401 unknown sid,
403 signature refused, 413 a call over MAX_CALL_BYTES.
"""
from __future__ import annotations

import codecs
import hashlib
import hmac
import json
import re
from urllib.parse import unquote_plus

import orjson

from udfs.campaigns import OWN_EVENTS
from udfs.envelope import CART_METHODS, is_anonymous, is_strictly_anonymous, new_event_id
from udfs.limits import MAX_ACTION_LENGTH, MAX_CALL_BYTES, MAX_DEPTH, MAX_FUTURE_MS, MAX_ID_LENGTH, check_json

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


def _no_constants(name: str):
    raise ValueError(f"{name} is not a JSON number")


def loads(text: str | bytes):
    """JSON as the collector reads it: integers exact (a 70-digit integer is refused by the
    limits, not rounded to a float as a faster parser would), NaN and Infinity refused."""
    return json.loads(text, parse_constant=_no_constants)


def parse_data(text: str) -> dict:
    """A JSON object, or the same written JavaScript-style (bare keys, 'single quotes')."""
    try:
        value = loads(text)
    except ValueError:
        out = []
        tokens = list(_tokens(text))
        for i, (kind, tok) in enumerate(tokens):
            if kind == "sq":
                out.append(_single_to_json(tok))
            elif kind == "word":
                if tok in ("true", "false", "null"):
                    out.append(tok)
                elif i + 1 < len(tokens) and tokens[i + 1][1] == ":":
                    out.append(json.dumps(tok))  # a bare key
                else:
                    raise ValueError(f"{tok} is not a JSON value")
            else:
                out.append(tok)
        value = loads("".join(out))
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


def _ts_ms(params: dict, app, received_at_ms: int) -> int:
    """The call's time in ms: Unix seconds as the seed sends them, or ms (13 digits). It must
    lie between the app's history_start and an hour past the receive time: a year-9999 set
    would otherwise pin a property forever, and a ms value read as seconds lands in the
    future and is refused rather than misread."""
    ts = params.get("ts")
    if type(ts) is not int:  # the JavaScript library sends integers; URLs send text
        raw = _get(params, "ts")
        try:
            ts = float(raw)
        except ValueError:
            raise CallError(400, f"parameter 'ts' must be a Unix timestamp, got {raw!r}") from None
    if not 0 <= ts < 1e14:
        raise CallError(400, f"parameter 'ts' is out of range: {params.get('ts')!r}")
    ms = int(ts if ts >= 1e11 else ts * 1000)
    if ms > received_at_ms + MAX_FUTURE_MS:
        raise CallError(400, f"parameter 'ts' ({params.get('ts')!r}) is more than 1 hour in the future")
    if ms < app.history_start_ms:
        raise CallError(400, f"parameter 'ts' ({params.get('ts')!r}) is before the app's history start "
                             f"({app.history_start})")
    return ms


def _data(params: dict, name: str, required: bool) -> dict | None:
    """A JSON object parameter (`data`, or a cart), within the nesting and number limits."""
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise CallError(400, f"missing parameter {name!r}")
        return None
    if isinstance(value, str):
        try:
            value = parse_data(value)
        except RecursionError:
            raise CallError(400, f"parameter {name!r} nests deeper than {MAX_DEPTH} levels") from None
        except ValueError as e:
            raise CallError(400, f"parameter {name!r} is not a JSON object: {e}") from None
    elif not isinstance(value, dict):
        raise CallError(400, f"parameter {name!r} must be a JSON object, got {type(value).__name__}")
    try:
        check_json(value, f"parameter {name!r}")
    except ValueError as e:
        raise CallError(400, str(e)) from None
    return value


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


def _source_is_unsigned(app, params: dict, source: str, id_param: str, sign_param: str) -> bool:
    """On a signed-only app the id merged *from* (alias srcid, identify previous_id) needs a
    signature of its own, except a strictly anonymous id (a browser's a- + 23 letters or
    digits): that may merge unsigned as long as it is not merged into an identified person
    yet, which only identity_merge can tell. True when it merges unsigned."""
    if not app.signed_only:
        return False
    sign = _get(params, sign_param, required=False)
    if sign is not None:
        _check_signature(app, params, source, sign_param)
        return False
    if is_strictly_anonymous(source):
        return True
    raise CallError(403, f"app {app.sid} accepts only signed data: {sign_param!r} missing for {id_param} {source!r} "
                         "(only a strictly anonymous id, a- and 23 letters or digits, may merge unsigned)")


def serialized(env: dict) -> bytes:
    """The envelope as the JSON that goes to Kafka, or CallError 413 over MAX_CALL_BYTES."""
    text = orjson.dumps(env)
    if len(text) > MAX_CALL_BYTES:
        raise CallError(413, f"the call is {len(text):,} bytes as an envelope, over the limit of "
                             f"{MAX_CALL_BYTES:,} bytes per call")
    return text


def envelope(method: str, params: dict, app, received_at_ms: int) -> dict:
    """The raw envelope of one call, or CallError. `app` is the sid's config.App. On a
    signed-only app every id the call touches is signed, or is a strictly anonymous source
    the envelope marks `unsigned_source` (identity_merge then merges it only while it is
    still anonymous)."""
    ts = _ts_ms(params, app, received_at_ms)
    event_id = _event_id(params)
    env = {"event_id": event_id, "app": app.sid, "ts": ts, "received_at": received_at_ms, "type": method}
    if method == "alias":
        env["srcid"], env["destid"] = _identity(params, "srcid"), _identity(params, "destid")
        if app.signed_only:
            _check_signature(app, params, env["destid"], "destsign")
        if _source_is_unsigned(app, params, env["srcid"], "srcid", "srcsign"):
            env["unsigned_source"] = True
        return env
    env["id"] = _identity(params, "id")
    if app.signed_only:
        _check_signature(app, params, env["id"], "sign")
    if method == "track":
        action = _get(params, "action")
        if len(action) > MAX_ACTION_LENGTH:
            raise CallError(400, f"parameter 'action' is longer than {MAX_ACTION_LENGTH} characters")
        if action in OWN_EVENTS:
            raise CallError(400, f"{action!r} is an event the pipeline makes itself (campaigns, letters): "
                                 "choose another name")
        env["action"] = action
        env["data"] = _data(params, "data", False) or {}
    elif method == "set":
        env["data"] = _data(params, "data", True)
    elif method == "identify":
        if params.get("previous_id"):
            env["previous_id"] = _identity(params, "previous_id")
            merges = env["previous_id"] != env["id"] and is_anonymous(env["previous_id"])  # else a switch
            if merges and _source_is_unsigned(app, params, env["previous_id"], "previous_id", "previous_sign"):
                env["unsigned_source"] = True
    elif method in CART_ACTION_OF:
        env["type"], env["cart_action"] = "cart", CART_ACTION_OF[method]
        env["data"] = _data(params, "cart" if "cart" in params else "data", True)
    else:
        raise CallError(400, f"unknown method {method!r}")
    return env
