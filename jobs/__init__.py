"""Tracktor's Flink jobs, one per file, in the order data flows through them.

Each file declares `JOB` (tracktor.flink.runner.Job) and runs alone with
`python -m jobs.NAME`; `bin/tracktor job NAME` and the demo find them here.
"""
from __future__ import annotations

import importlib

NAMES = ("identity_merge", "cart_timeout", "segment_eval", "workflow_runner", "metric_rollup")


def load(name: str):
    """The Job declared by jobs/<name>.py."""
    if name not in NAMES:
        raise ValueError(f"no job {name!r} (jobs: {', '.join(NAMES)})")
    return importlib.import_module(f"jobs.{name}").JOB
