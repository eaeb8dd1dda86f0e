"""The quick start as a newcomer runs it: the demo, then the commands its last lines print,
which must show the demo's own numbers (not an empty warehouse somewhere else), and with
--serve the dashboard over the same data until Ctrl-C."""
from __future__ import annotations

import json
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import urllib.request

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


def _until_serving(demo: subprocess.Popen, seconds: float) -> tuple[str, str]:
    """The demo's output up to the line saying where it serves the dashboard, and that address."""
    lines, found = [], queue.Queue()

    def read():
        for line in demo.stdout:
            lines.append(line)
            if match := re.match(r"dashboard at (http://[\d.:]+)/", line):
                found.put(match.group(1))
        found.put(None)
    threading.Thread(target=read, daemon=True).start()
    try:
        address = found.get(timeout=seconds)
    except queue.Empty:
        address = None
    assert address, f"the demo did not serve its dashboard (exit code {demo.poll()}):\n" + "".join(lines)[-3000:]
    return "".join(lines), address


def test_the_commands_the_demo_prints_show_the_demo_numbers_and_its_dashboard_serves_them(tmp_path):
    cfg = make_config(tmp_path, "demo")
    demo = subprocess.Popen([sys.executable, "-m", "tracktor.cli", "--config", str(cfg.path), "demo", "--people", "80",
                             "--serve", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=clean_env())
    try:
        stdout, address = _until_serving(demo, 900)
        _the_printed_commands_show_the_demo_numbers(stdout)
        with urllib.request.urlopen(address + "/", timeout=60) as page:
            assert b'src="/static/dashboard.js"' in page.read()
        req = urllib.request.Request(f"{address}/api/v1/apps/demo-video/dashboard?range=last-7-days",
                                     headers={"Authorization": f"Bearer {cfg.apps['demo-video'].read_token}"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            board = json.loads(resp.read())
        journey = next(f for f in board["funnels"] if f["name"] == "video_journey")
        shown = _block(stdout, "Funnel video_journey")
        assert [s["people"] for s in journey["steps"]] == [int(line.split()[-1].replace(",", "")) if "%" not in line
                                                           else int(line.split()[-3].replace(",", ""))
                                                           for line in shown[2:]]
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        assert demo.wait(60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(30)


def _the_printed_commands_show_the_demo_numbers(stdout: str) -> None:
    explore = [shlex.split(line.strip())[1:] for line in stdout.splitlines()
               if line.startswith("  bin/tracktor --config ")]
    funnel = next(args for args in explore if args[2:5] == ["report", "funnel", "video_journey"])
    metric = next(args for args in explore if args[2:5] == ["report", "metric", "site_visitors"])

    def run(args):
        out = subprocess.run([sys.executable, "-m", "tracktor.cli", *args], cwd=ROOT, capture_output=True,
                             text=True, env=clean_env(), timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout

    shown = _block(stdout, "Funnel video_journey")
    assert int(shown[2].split()[-1]) > 0  # the demo's funnel has people in its first step
    reported = run(funnel).strip().splitlines()
    assert "funnel video_journey" in reported[0] and reported[1:] == shown[1:]  # titles differ, the table not
    shown = _block(stdout, "Metric site_visitors")
    assert re.search(r"people [1-9]", shown[-1])
    reported = run(metric).strip().splitlines()
    assert "metric site_visitors" in reported[0] and reported[1:] == shown[1:]
