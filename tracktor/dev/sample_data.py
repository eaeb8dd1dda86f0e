"""A believable, deterministic stream of tracking calls for the demo, tests and benchmarks.

The same seed and size always give the same envelopes (ids, timestamps, event ids), so a
test can compute its expected answers from the very stream it sends.
"""
from __future__ import annotations

import random
import string
from typing import Iterator

from tracktor.dev import envelopes as E

BASE62 = string.digits + string.ascii_letters
DAY_MS = 86_400_000
MINUTE_MS = 60_000
CITIES = ["New York", "London", "Paris", "Berlin", "Tokyo", "Madrid", "Toronto"]
FIRST = ["Dave", "Anna", "Li", "Maria", "Omar", "Sofia", "Ken", "Zoe", "Ivan", "Lena"]
LAST = ["Johnson", "Smith", "Garcia", "Chen", "Müller", "Rossi", "Kim", "Novak"]
COMPANIES = [None, "Acme Inc", {"id": "c-42", "name": "Globex"}, "Initech", "Umbrella"]
PRODUCTS = [("Marshmallows 1kg pack", 1.99), ("Zephir 1kg pack", 1.99), ("Acme inc R14", 54.0),
            ("HD headphones", 89.5), ("Tea sampler", 12.25)]


def anonymous_id(rng: random.Random) -> str:
    return "a-" + "".join(rng.choice(BASE62) for _ in range(23))


class _Person:
    """One visitor's calls, in time order, with deterministic event ids."""

    def __init__(self, gen: "Generator", app: str, index: int, start_ms: int):
        self.gen, self.app, self.index = gen, app, index
        self.rng = random.Random(f"{gen.seed}:{app}:{index}")
        self.t = start_ms
        self.calls: list[dict] = []

    def later(self, lo_min: float = 0.2, hi_min: float = 20) -> int:
        self.t += int(self.rng.uniform(lo_min, hi_min) * MINUTE_MS)
        return self.t

    def eid(self) -> str:
        return f"s{self.gen.seed}-{self.app}-{self.index}-{len(self.calls)}"

    def add(self, build, *args, **kw):
        ts = self.later()
        env = build(self.app, *args, ts=ts, event_id=self.eid(), received_at=ts + self.rng.randint(5, 900), **kw)
        self.calls.append(env)
        return env


def _profile(rng: random.Random, login: str) -> dict:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    props = {"email": f"{login}@example.com", "first_name": first, "last_name": last,
             "age": rng.randint(18, 70), "city": rng.choice(CITIES), "plan": "free",
             "interests": rng.sample(["drama", "comedy", "sci-fi", "docs", "kids"], k=rng.randint(1, 3))}
    company = rng.choice(COMPANIES)
    if company is not None:
        props["company"] = company
    return props


def _video_visitor(p: _Person) -> None:
    rng = p.rng
    anon = anonymous_id(rng)
    login = f"user{p.index}"
    p.add(E.track, anon, "Site visit", data={"page": "/"})
    if rng.random() < 0.65:
        p.add(E.track, anon, "Free movie view", data={"movie_id": rng.randint(1, 500)})
    else:
        return
    if rng.random() < 0.55:
        p.add(E.identify, login, anon)
        p.add(E.set_properties, login, _profile(rng, login))
        p.add(E.track, login, "Registration")
    elif rng.random() < 0.15:
        # skipped the registration step but upgraded anyway: a funnel must stop after step 2
        p.add(E.track, anon, "Upgrade to Premium")
        return
    else:
        return
    if rng.random() < 0.2:  # comes back on a second device, browses anonymously, signs in
        second = anonymous_id(rng)
        p.later(60, 600)
        p.add(E.track, second, "Site visit", data={"page": "/movies"})
        p.add(E.identify, login, second)
    if rng.random() < 0.1:  # had an old account too: the two profiles are aliased
        old = f"legacy{p.index}"
        p.add(E.set_properties, old, {"email": f"{old}@example.com", "legacy": True})
        p.add(E.track, old, "Site visit")
        p.add(E.alias, old, login)
    if rng.random() < 0.45:
        p.add(E.track, login, "Upgrade to Premium", data={"price": 9.99})
        p.add(E.set_properties, login, {"plan": "premium", "trial_ends": None})


def _shop_visitor(p: _Person) -> None:
    rng = p.rng
    anon = anonymous_id(rng)
    p.add(E.track, anon, "Site visit", data={"page": "/shop"})
    viewed = rng.sample(PRODUCTS, k=rng.randint(1, 4))
    for name, price in viewed:
        p.add(E.track, anon, "Product view", data={"product": name, "price": price})
    if rng.random() < 0.35:
        return
    who = anon
    if rng.random() < 0.5:
        who = f"buyer{p.index}"
        p.add(E.identify, who, anon)
        p.add(E.set_properties, who, _profile(rng, who))
    products = [{"name": n, "price": pr, "count": rng.randint(1, 3)} for n, pr in viewed[: rng.randint(1, len(viewed))]]
    cart = {"totalprice": round(sum(x["price"] * x["count"] for x in products), 2), "products": products}
    p.add(E.cart, who, "set", cart)
    if rng.random() < 0.3:  # edits the cart: the abandonment timer restarts
        cart = {**cart, "products": products[:1], "totalprice": round(products[0]["price"] * products[0]["count"], 2)}
        p.add(E.cart, who, "set", cart)
    fate = rng.random()
    if fate < 0.4:
        p.add(E.cart, who, "purchase", {**cart, "paid_with": "Credit card", "card_type": "VISA"})
        p.add(E.set_properties, who, {"total_spent": cart["totalprice"]})
    elif fate < 0.55:
        p.add(E.cart, who, "cancel", cart)
    # else: left behind, to become "Cart abandoned"


class Generator:
    """`people` visitors per app, starting within `days` days from `start_ms`."""

    KINDS = {"video": _video_visitor, "shop": _shop_visitor}

    def __init__(self, seed: int = 1, people: int = 1000, apps: dict[str, str] | None = None,
                 start_ms: int = 1_767_225_600_000, days: int = 7):
        self.seed, self.people, self.start_ms, self.days = seed, people, start_ms, days
        self.apps = apps or {"demo-video": "video", "demo-shop": "shop"}
        for app, kind in self.apps.items():
            if kind not in self.KINDS:
                raise ValueError(f"app {app}: unknown kind {kind!r} (known: {', '.join(self.KINDS)})")

    def __iter__(self) -> Iterator[dict]:
        for index in range(self.people):
            for app, kind in self.apps.items():
                rng = random.Random(f"{self.seed}:{app}:{index}:start")
                start = self.start_ms + rng.randrange(self.days * DAY_MS)
                person = _Person(self, app, index, start)
                self.KINDS[kind](person)
                yield from person.calls
