"""workflow_runner: tracktor.events, .derived, .segments -> tracktor.actions (letters, in-app
messages, webhooks, property sets, events) and Campaign step events on tracktor.derived.

Per person (keyed by bucket of app:person, udfs/persons.py), on event time as cart_timeout:
each campaign's trigger starts a run through its blocks; delays end when the job's clock
passes them (udfs/workflows.py, docs/workflows.md). Campaigns come from tracktor.yaml and
change while it runs through tracktor.control. A merged-away person's runs move to its
survivor through tracktor.handoffs. `bin/tracktor deliver` performs the actions.

    python -m jobs.workflow_runner [--config tracktor.yaml] [--bounded]
"""
from __future__ import annotations

from tracktor.flink.persons import build_person_job
from tracktor.flink.runner import Job, main
from udfs.workflows import WorkflowLogic


def logic(cfg) -> WorkflowLogic:
    return WorkflowLogic({app.sid: app.campaign_definitions() for app in cfg.app_list}, topics=cfg.topics)


def build(inputs: dict, cfg):
    return build_person_job(JOB, logic(cfg), inputs, cfg)


JOB = Job("workflow_runner", inputs=("events", "derived", "segments", "handoffs", "control"),
          outputs=("actions", "derived", "handoffs", "dead_letter"), build=build, clock_inputs=("events", "derived"),
          summary="campaign triggers, filters and delays -> action requests (letters, webhooks, ...)")

if __name__ == "__main__":
    main(JOB)
