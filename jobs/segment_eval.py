"""segment_eval: tracktor.events, tracktor.derived -> tracktor.segments (entered / exited).

Per person (keyed by bucket of app:person, udfs/persons.py): counts per event and day and
the person's properties, evaluated against the app's segments on every event
(udfs/segments.py, docs/segments.md). Windows roll at midnight UTC on event time. Definitions
come from tracktor.yaml and change while it runs through tracktor.control: each change reaches
every bucket, which evaluates its persons of that app again. A merged-away person's state
moves to its survivor through tracktor.handoffs.

    python -m jobs.segment_eval [--config tracktor.yaml] [--bounded]
"""
from __future__ import annotations

from tracktor.flink.persons import build_person_job
from tracktor.flink.runner import Job, main
from udfs.segments import SegmentLogic


def logic(cfg) -> SegmentLogic:
    return SegmentLogic({app.sid: app.segment_definitions() for app in cfg.app_list})


def build(inputs: dict, cfg):
    return build_person_job(JOB, logic(cfg), inputs, cfg)


JOB = Job("segment_eval", inputs=("events", "derived", "handoffs", "control"),
          outputs=("segments", "handoffs", "dead_letter"), build=build, clock_inputs=("events", "derived"),
          summary="events and properties -> segment entered / exited, live")

if __name__ == "__main__":
    main(JOB)
