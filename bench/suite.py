"""Every benchmark, one after the other, into one table and bench/results/<date>.json.

    bin/tracktor bench [--quick] [--only NAME ...]

Each benchmark runs in a process of its own (its own broker, JVM and warehouse; one that
fails does not stop the others). The exit status is 1 when a benchmark failed, never
because of a timing: this machine is shared and noisy, and a figure is read beside the
baseline measured in the same run.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

from bench.common import ROOT, figures_in, fmt

BENCHES = ("collector", "jobs", "segment_eval", "workflows", "freshness", "queries", "warehouse_http", "startup")
TIMEOUT_S = {"quick": 600, "full": 3600}
EXCEPTION = re.compile(r"([\w.]+(Error|Exception|Expired|Interrupt)\b|Caused by:)")  # a line that names an exception


def run(name: str, quick: bool) -> tuple[list, str | None, float]:
    """(figures, error or None, seconds) of bench/NAME.py, its output streamed as it runs."""
    cmd = [sys.executable, str(ROOT / "bench" / f"{name}.py")] + (["--quick"] if quick else [])
    env = {k: v for k, v in os.environ.items() if "PYFLINK" not in k}
    t = time.monotonic()
    lines = []
    limit = TIMEOUT_S["quick" if quick else "full"]
    try:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        return [], str(e), time.monotonic() - t
    killer = threading.Timer(limit, proc.kill)  # a benchmark that hangs silently is stopped too
    killer.start()
    try:
        for line in proc.stdout:
            lines.append(line)
            if not line.startswith("BENCH-FIGURES"):
                print(f"  [{name}] {line}", end="", flush=True)
        code = proc.wait()
    finally:
        killer.cancel()
    seconds = time.monotonic() - t
    if code != 0:
        how = f"killed at its {limit} s deadline" if seconds >= limit else f"exit status {code}"
        return [], f"{how}: {what_went_wrong(lines)}", seconds
    try:
        return figures_in("".join(lines)), None, seconds
    except ValueError as e:
        return [], str(e), seconds


def what_went_wrong(lines: list[str]) -> str:
    """A failed benchmark's exceptions (the first lines naming one and their "Caused by"
    chain, wherever they are in its output: a cleanup's error or later log lines may follow)
    and then its last lines; Java stack frames (a Py4JJavaError ends in frames alone), blank
    lines and Python's ^^^ markers left out."""
    said = [line.rstrip() for line in lines
            if not line.lstrip().startswith(("at ", "... ")) and set(line.strip()) - set("^~ ")]
    errors = [line for line in said if EXCEPTION.match(line.lstrip(": "))][:8]
    tail = [line for line in said[-5:] if line not in errors]
    return "\n".join(errors + tail).strip()[-2000:]


def table(figures) -> str:
    head = f"{'benchmark':15s} {'figure':44s} {'value':>12s} {'unit':9s} {'baseline (same run)':38s} {'baseline':>12s} {'ratio':>7s}"
    rows = [head, "-" * len(head)]
    for f in figures:
        ratio = f"{f.ratio:7.3f}" if f.ratio is not None else ""
        base = fmt(f.baseline_value) if f.baseline_value is not None else ""
        rows.append(f"{f.bench:15s} {f.name:44s} {fmt(f.value):>12s} {f.unit:9s} {f.baseline:38s} {base:>12s} {ratio}")
    return "\n".join(rows)


def main(quick: bool = False, only: list[str] | None = None) -> int:
    names = only or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; there are {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    started = datetime.now(timezone.utc)
    results, errors, seconds = [], {}, {}
    for name in names:
        print(f"==> bench/{name}.py{' --quick' if quick else ''}", flush=True)
        figures, error, seconds[name] = run(name, quick)
        results += figures
        if error:
            errors[name] = error
            print(f"  [{name}] FAILED: {error}", flush=True)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{started:%Y-%m-%d}{'-quick' if quick else ''}.json"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    path.write_text(json.dumps({
        "started": started.isoformat(timespec="seconds"), "quick": quick, "commit": commit,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "seconds": {k: round(v, 1) for k, v in seconds.items()}, "errors": errors,
        "figures": [dict(f.__dict__, ratio=f.ratio) for f in results]}, indent=1) + "\n")
    print("\n" + table(results))
    print(f"\n{len(results)} figures from {len(names) - len(errors)} of {len(names)} benchmarks in "
          f"{sum(seconds.values()):.0f}s; written to {path.relative_to(ROOT)}")
    for name, error in errors.items():
        print(f"FAILED bench/{name}.py: {error}", file=sys.stderr)
    return 1 if errors else 0
