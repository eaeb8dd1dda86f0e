"""cart_timeout: tracktor.events -> tracktor.derived (Cart abandoned, Cart canceled,
Cart purchased, Visited Site).

Per person (keyed by bucket of app:person, udfs/persons.py), on event time: the job's clock
is the log time in tracktor.events, moved on by identity_merge's heartbeats even when an app
goes quiet (docs/carts.md). The decisions are udfs/carts.py's; a merged-away person's carts
move to its survivor through tracktor.handoffs.

    python -m jobs.cart_timeout [--config tracktor.yaml] [--bounded]
"""
from __future__ import annotations

from tracktor.flink.persons import build_person_job
from tracktor.flink.runner import Job, main
from udfs.carts import CartLogic, CartSettings


def logic(cfg) -> CartLogic:
    return CartLogic({app.sid: CartSettings(int(app.cart_timeout * 1000), int(app.visit_gap * 1000),
                                            frozenset(app.advanced_events)) for app in cfg.app_list})


def build(inputs: dict, cfg):
    return build_person_job(JOB, logic(cfg), inputs, cfg)


JOB = Job("cart_timeout", inputs=("events", "handoffs"), outputs=("derived", "handoffs", "dead_letter"), build=build,
          clock_inputs=("events",), clock_outputs=("derived",),
          summary="carts and visits -> Cart abandoned / canceled / purchased, Visited Site")

if __name__ == "__main__":
    main(JOB)
