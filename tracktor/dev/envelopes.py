"""Builders for `tracktor.raw` envelopes: the one place that knows their shape on the way in."""
from __future__ import annotations

from udfs.envelope import CART_METHODS, new_event_id


def _envelope(kind: str, app: str, ts: int, event_id: str | None, received_at: int | None, **fields) -> dict:
    env = {
        "event_id": event_id or new_event_id(),
        "app": app,
        "type": kind,
        "ts": int(ts),
        "received_at": int(received_at if received_at is not None else ts),
    }
    env.update({k: v for k, v in fields.items() if v is not None})
    return env


def track(app, distinct_id, action, ts, data=None, event_id=None, received_at=None) -> dict:
    return _envelope("track", app, ts, event_id, received_at, id=distinct_id, action=action, data=data or {})


def set_properties(app, distinct_id, data, ts, event_id=None, received_at=None) -> dict:
    return _envelope("set", app, ts, event_id, received_at, id=distinct_id, data=data)


def identify(app, distinct_id, previous_id, ts, event_id=None, received_at=None) -> dict:
    return _envelope("identify", app, ts, event_id, received_at, id=distinct_id, previous_id=previous_id)


def alias(app, srcid, destid, ts, event_id=None, received_at=None) -> dict:
    return _envelope("alias", app, ts, event_id, received_at, srcid=srcid, destid=destid)


def cart(app, distinct_id, cart_action, cart_data, ts, event_id=None, received_at=None) -> dict:
    return _envelope("cart", app, ts, event_id, received_at, id=distinct_id, cart_action=cart_action, data=cart_data)


def delete(app, distinct_id, ts, event_id=None, received_at=None) -> dict:
    """Delete the person `distinct_id` belongs to, with all their ids and data."""
    return _envelope("delete", app, ts, event_id, received_at, id=distinct_id)


def kafka_key(env: dict) -> str:
    """Raw records are keyed by app: one app's calls share a partition, so identity_merge
    (keyed by app) sees them in the order the collector accepted them, whatever its
    parallelism (docs/identity.md)."""
    return env["app"]


_CALL_FIELDS = ("id", "action", "data", "previous_id", "srcid", "destid")


def to_call(env: dict) -> dict:
    """The collector's /batch call that produces this envelope (event id and receive time
    are the collector's to give)."""
    method = CART_METHODS[env["cart_action"]] if env["type"] == "cart" else env["type"]
    call = {"method": method, "sid": env["app"], "ts": env["ts"]}
    call.update({k: env[k] for k in _CALL_FIELDS if k in env})
    if env["type"] == "cart":
        call["cart"] = call.pop("data")
    return call
