"""The quick start as a newcomer runs it: the demo, then the commands its last lines print,
which must show the demo's own numbers (not an empty warehouse somewhere else)."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import clean_env, make_config
from tracktor import ROOT

pytestmark = pytest.mark.integration  # its own embedded broker, every job, chDB


def _block(text: str, title: str) -> list[str]:
    """The lines of the table whose title line starts with `title`, up to the blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def test_the_commands_the_demo_prints_show_the_demo_numbers(tmp_path):
    cfg = make_config(tmp_path, "demo")
    demo = subprocess.run([sys.executable, "-m", "tracktor.cli", "--config", str(cfg.path), "demo", "--people", "80"],
                          cwd=ROOT, capture_output=True, text=True, env=clean_env(), timeout=900)
    assert demo.returncode == 0, demo.stderr[-3000:]
    explore = [shlex.split(line.strip())[1:] for line in demo.stdout.splitlines()
               if line.startswith("  bin/tracktor --config ")]
    funnel = next(args for args in explore if args[2:5] == ["report", "funnel", "video_journey"])
    metric = next(args for args in explore if args[2:5] == ["report", "metric", "site_visitors"])

    def run(args):
        out = subprocess.run([sys.executable, "-m", "tracktor.cli", *args], cwd=ROOT, capture_output=True,
                             text=True, env=clean_env(), timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout

    shown = _block(demo.stdout, "Funnel video_journey")
    assert int(shown[2].split()[-1]) > 0  # the demo's funnel has people in its first step
    reported = run(funnel).strip().splitlines()
    assert "funnel video_journey" in reported[0] and reported[1:] == shown[1:]  # titles differ, the table not
    shown = _block(demo.stdout, "Metric site_visitors")
    assert re.search(r"people [1-9]", shown[-1])
    reported = run(metric).strip().splitlines()
    assert "metric site_visitors" in reported[0] and reported[1:] == shown[1:]
