"""What every benchmark shares: its figures, each beside a baseline measured in the same run.

A benchmark is a script `bench/NAME.py` with `--quick` (sizes that finish in well under a
minute); it prints what it measures as it goes and ends with `report(figures)`, whose last
line (MARK + JSON) is what `bin/tracktor bench` (bench/suite.py) collects into one table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MARK = "BENCH-FIGURES "


@dataclass(frozen=True)
class Figure:
    """One measured figure and its baseline. `lower_is_better` for times and latencies."""
    bench: str
    name: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    lower_is_better: bool = False

    @property
    def ratio(self) -> float | None:
        """value / baseline: for a rate, the share of the baseline's speed reached; for a
        time, how many times the baseline's time it takes."""
        if not self.baseline_value:
            return None
        return self.value / self.baseline_value

    def line(self) -> str:
        text = f"  {self.name:44s} {fmt(self.value):>12s} {self.unit:9s}"
        if self.baseline_value is not None:
            text += f" {self.baseline:38s} {fmt(self.baseline_value):>12s}  ratio {self.ratio:.3f}"
        return text


def p50_p99(lags: list[float]) -> tuple[float, float]:
    """The median and the 99th percentile (the nearest rank below) of sorted latencies."""
    return statistics.median(lags), lags[min(len(lags) - 1, int(0.99 * len(lags)))]


def fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3f}"


def arguments(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (bin/tracktor bench --quick, CI)")
    return ap


def report(figures: list[Figure]) -> None:
    """Print the figures, then the line bench/suite.py reads."""
    for f in figures:
        print(f.line(), flush=True)
    print(MARK + json.dumps([asdict(f) for f in figures]), flush=True)


def figures_in(output: str) -> list[Figure]:
    """The figures a benchmark reported in `output` (its stdout)."""
    for line in reversed(output.splitlines()):
        if line.startswith(MARK):
            return [Figure(**f) for f in json.loads(line[len(MARK):])]
    raise ValueError("the benchmark reported no figures")
