"""The long-running commands' logging (tracktor/logs.py): text, or JSON lines by a switch."""
from __future__ import annotations

import json
import logging

import pytest

from tracktor import config, logs
from tracktor.config.settings import LogSettings


@pytest.fixture(autouse=True)
def root_logger():
    """setup() replaces the root logger's handlers: pytest's own come back after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_time_level_logger_message_and_the_traceback(capsys):
    logs.setup(LogSettings(format="json", level="INFO"))
    log = logging.getLogger("tracktor.test")
    log.debug("not at INFO")
    log.info("hello %s", "world")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["level"], e["logger"], e["message"]) for e in lines] == [
        ("INFO", "tracktor.test", "hello world"), ("ERROR", "tracktor.test", "failed")]
    assert "ValueError: boom" in lines[1]["exception"] and lines[0]["time"].endswith("+00:00")


def test_text_is_the_default(capsys):
    logs.setup(LogSettings())
    logging.getLogger("tracktor.test").warning("plain")
    assert capsys.readouterr().err.rstrip().endswith("WARNING tracktor.test: plain")


def test_an_unknown_format_is_refused_with_its_key(tmp_path):
    tree = {"kafka": {"bootstrap_servers": "embedded"}, "clickhouse": {"dsn": "chdb:wh"},
            "apps": [{"sid": "a", "name": "A"}], "logging": {"format": "xml"}}
    with pytest.raises(config.ConfigError, match="logging.format"):
        config.parse(tree, tmp_path / "tracktor.yaml")
