"""cart_timeout's decisions (DESIGN.md, Carts and advanced events; docs/carts.md).

Per person: the cart events not decided yet and recent cancels and purchases, in time
order, and when the person was last active. Time is the log time (the record's timestamp:
the collector's receive time), the same clock the job's watermark follows, so a replay
decides alike.

- `setCart` starts or restarts the inactivity timer; `cancelCart` and `purchaseCart` stop it
  and emit `Cart canceled` / `Cart purchased` at once.
- When the clock passes a setCart's due time (its time + the app's cart_timeout) and no cart
  event came in between, `Cart abandoned` is emitted once, at the due time, with that cart.
  The decision is taken only when the clock (the watermark) has passed the due time, from
  the cart events in time order, so events out of order within the allowed disorder never
  fire a timer early, and a later event that arrived first changes nothing.
- `Visited Site`: a person's first event after an inactivity gap (the app's visit_gap).
- Each of the four can be turned off per app (advanced_events).
"""
from __future__ import annotations

from bisect import insort
from dataclasses import dataclass

from udfs.envelope import BadRecord

CART_ACTIONS = {"setCart": "set", "cancelCart": "cancel", "purchaseCart": "purchase"}
ABANDONED, CANCELED, PURCHASED, VISITED = "Cart abandoned", "Cart canceled", "Cart purchased", "Visited Site"
STOPPED = {"cancel": (CANCELED, "cart_canceled", "canceled"), "purchase": (PURCHASED, "cart_purchased", "purchased")}


@dataclass(frozen=True)
class CartSettings:
    """An app's settings (apps[] in tracktor.yaml), in ms."""
    timeout_ms: int = 30 * 60_000
    visit_gap_ms: int = 30 * 60_000
    enabled: frozenset = frozenset({"visited_site", "cart_abandoned", "cart_canceled", "cart_purchased"})


def check_cart(cart) -> dict:
    """The seed's cart object, or BadRecord naming what is wrong: totalprice a number,
    products a list of objects with a name (text) and a price (a number), count (default 1)
    a whole number of at least 1; any other keys are the shop's own."""
    if not isinstance(cart, dict):
        raise BadRecord("the cart is not an object")
    if not _number(cart.get("totalprice")):
        raise BadRecord(f"the cart's totalprice must be a number, got {cart.get('totalprice')!r}"[:200])
    products = cart.get("products", [])
    if not isinstance(products, list):
        raise BadRecord("the cart's products must be a list")
    for i, p in enumerate(products):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p["name"]:
            raise BadRecord(f"the cart's product {i} needs a name")
        if not _number(p.get("price")):
            raise BadRecord(f"the cart's product {i} ({p['name'][:60]!r}) needs a numeric price")
        count = p.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise BadRecord(f"the cart's product {i} ({p['name'][:60]!r}) has count {count!r}: a whole number >= 1")
    return cart


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class CartLogic:
    """The Logic (udfs/persons.py) of cart_timeout. A person's state:
    {"app", "person", "carts": [[t, event_id, action, distinct_id, cart], ...] (in order: the
    carts not decided yet, and each cancel or purchase until a timeout after it, as it stops
    the cart of a person merged in later that was set before it), "seen": the last
    activity's time, or None}. What `fire` decides depends only on the time it is given, not
    on the times it was called at before: a merge hands over the same state either way."""

    def __init__(self, apps: dict[str, CartSettings]):
        self.apps = apps
        self.default = CartSettings()

    def settings(self, app: str) -> CartSettings:
        return self.apps.get(app, self.default)

    def new(self, app: str, person: str) -> dict:
        return {"app": app, "person": person, "carts": [], "seen": None}

    def apply(self, s: dict, event: dict, ts: int, out) -> None:
        if event.get("kind") not in ("track", "cart"):
            return  # property sets and derived events are not visits or carts
        cfg = self.settings(s["app"])
        action = CART_ACTIONS.get(event.get("event")) if event.get("kind") == "cart" else None
        cart = check_cart(event.get("data")) if action else None
        if "visited_site" in cfg.enabled and (s["seen"] is None or ts - s["seen"] >= cfg.visit_gap_ms):
            out("derived", *self._derived(s, event, VISITED, ts, "visit", {}))
        s["seen"] = ts if s["seen"] is None else max(s["seen"], ts)
        if action is None:
            return
        entry = [ts, event["event_id"], action, event.get("distinct_id") or s["person"], cart]
        if entry not in s["carts"]:
            insort(s["carts"], entry, key=lambda e: (e[0], e[1]))
        if action in STOPPED:
            name, switch, suffix = STOPPED[action]
            if switch in cfg.enabled:
                out("derived", *self._derived(s, event, name, ts, suffix, {"cart": cart}))

    def due(self, s: dict) -> int | None:
        """The first time the person's clock must reach: a cart's due time, or once no cart is
        left, the end of the visit (when its state can be forgotten). Not the visit's end
        while carts are left: fire could not forget the person then, and a wake time that
        does not move is never woken again (tracktor/flink/persons.py sets a timer when it
        changes)."""
        cfg = self.settings(s["app"])
        times = [t + cfg.timeout_ms for t, _, _, _, _ in s["carts"]]
        if s["seen"] is not None and not times:
            times.append(s["seen"] + cfg.visit_gap_ms)
        return min(times) if times else None

    def fire(self, s: dict, now: int, out) -> None:
        cfg = self.settings(s["app"])
        carts, keep = s["carts"], []
        for i, (t, event_id, action, distinct_id, cart) in enumerate(carts):
            if t > now or action == "set" and t + cfg.timeout_ms > now:
                keep += carts[i:]  # not settled (a cart event at the same time may still come
                break              # before it), or undecided: it and what follows it stay
            if action == "set":
                due = t + cfg.timeout_ms
                following = carts[i + 1] if i + 1 < len(carts) else None
                if (following is None or following[0] > due) and "cart_abandoned" in cfg.enabled:
                    out("derived", *self._record(s, distinct_id, ABANDONED, due, f"{event_id}:abandoned",
                                                 {"cart": cart, "age_ms": cfg.timeout_ms, "set_at": t}))
            elif t + cfg.timeout_ms > now:
                keep.append(carts[i])  # it may still stop the cart of a person merged in later
        s["carts"] = keep
        if not s["carts"] and s["seen"] is not None and now >= s["seen"] + cfg.visit_gap_ms:
            s["seen"] = None  # the visit is over: nothing to remember until the next one

    def combine(self, s: dict, other: dict, at: int, out) -> None:
        for entry in other.get("carts") or []:
            if entry not in s["carts"]:
                insort(s["carts"], entry, key=lambda e: (e[0], e[1]))
        seen = [x for x in (s["seen"], other.get("seen")) if x is not None]
        s["seen"] = max(seen) if seen else None

    def leave(self, s: dict, at: int, reason: str, out) -> None:
        pass  # the carts go with the person, or with them when they are deleted

    def empty(self, s: dict) -> bool:
        return not s["carts"] and s["seen"] is None

    # -- records -------------------------------------------------------------------------
    def _derived(self, s: dict, event: dict, name: str, ts: int, suffix: str, data: dict) -> dict:
        return self._record(s, event.get("distinct_id") or s["person"], name, ts, f"{event['event_id']}:{suffix}", data)

    @staticmethod
    def _record(s: dict, distinct_id: str, name: str, ts: int, event_id: str, data: dict) -> tuple:
        return (f"{s['app']}:{s['person']}", {
            "event_id": event_id, "app": s["app"], "kind": "derived", "event": name, "distinct_id": distinct_id,
            "person_id": s["person"], "ts": ts, "received_at": ts, "data": data}, ts)
