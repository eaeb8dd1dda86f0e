"""tracktor.yaml, loaded into typed models (pydantic): one file every command reads.

Every error names the key path and what is wrong, e.g.
``tracktor.yaml: apps[1].cart_timeout: expected a duration like 30m, got 'soon'``.
Relative paths in the file are relative to the file's folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from tracktor import ROOT
from tracktor.config.definitions import (CRITERIA_OPS, MAX_FUNNEL_STEPS, METRIC_TYPES, Criterion, Funnel, Metric,
                                         Step)
from tracktor.config.settings import ADVANCED_EVENTS, EMBEDDED, App, Config, Topics
from tracktor.config.types import parse_duration

__all__ = ["ADVANCED_EVENTS", "CRITERIA_OPS", "EMBEDDED", "MAX_FUNNEL_STEPS", "METRIC_TYPES", "App", "Config",
           "ConfigError", "Criterion", "DEFAULT_PATH", "Funnel", "Metric", "Step", "TOPIC_ROLES", "funnel_from",
           "Topics", "load", "metric_from", "parse", "parse_duration"]

DEFAULT_PATH = ROOT / "tracktor.yaml"
TOPIC_ROLES = tuple(Topics.model_fields)


class ConfigError(ValueError):
    pass


def load(path: str | Path | None = None) -> Config:
    path = Path(path or DEFAULT_PATH).resolve()
    try:
        tree = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return parse(tree, path)


def parse(tree: Any, path: Path) -> Config:
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: (top): expected a mapping, got {type(tree).__name__}")
    return _validate(Config, {**tree, "path": path}, str(path), context={"base": path.parent})


def funnel_from(name: str, node: Any, source: str = "funnel") -> Funnel:
    """A funnel defined ad hoc (command line, HTTP API), validated like one in tracktor.yaml."""
    return _validate(Funnel, {**node, "name": name} if isinstance(node, dict) else node, source, name)


def metric_from(name: str, node: Any, source: str = "metric") -> Metric:
    """A metric defined ad hoc, validated like one in tracktor.yaml."""
    return _validate(TypeAdapter(Metric), {**node, "name": name} if isinstance(node, dict) else node, source, name)


def _validate(model, node: Any, source: str, top: str = "(top)", context: dict | None = None):
    """`node` as `model`, or ConfigError with every problem; `top` names the root of the paths."""
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(node, context=context)
        return model.model_validate(node, context=context)
    except ValidationError as e:
        raise ConfigError(f"{source}: " + "; ".join(_describe(err, top) for err in e.errors())) from None


# Tags pydantic puts in an error's location for a tagged union (the metric types).
_UNION_TAGS = set(METRIC_TYPES)


def _path(loc: tuple, top: str) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS or part.startswith(("function-", "tagged-union[")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or top


def _describe(err: dict, top: str) -> str:
    """One pydantic error as `key.path: what is wrong`."""
    loc, kind, value = tuple(err["loc"]), err["type"], err.get("input")
    if not loc and kind == "value_error":  # a check across keys names its own path
        return err["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return f"{_path(loc[:-1], top)}: missing key {loc[-1]!r}"
    if kind == "extra_forbidden":
        return f"{_path(loc[:-1], top)}: unknown key {loc[-1]!r}"
    where = _path(loc, top)
    if kind == "literal_error":
        expected = err["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        return f"{where}: expected one of {expected}, got {value!r}"
    if kind == "union_tag_invalid":
        return f"{where}.type: expected one of {', '.join(METRIC_TYPES)}, got {err['ctx']['tag']!r}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{where}: expected an integer, got {value!r}"
    if kind in ("bool_type", "bool_parsing"):
        return f"{where}: expected true or false, got {value!r}"
    if kind in ("string_type", "string_too_short"):
        return f"{where}: expected a non-empty string, got {value!r}"
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = err["ctx"].get("ge", err["ctx"].get("le"))
        number = "an integer" if isinstance(value, int) else "a number"
        return f"{where}: expected {number} {'>=' if kind == 'greater_than_equal' else '<='} {bound}, got {value!r}"
    if kind in ("too_short", "too_long") and "steps" in loc[-1:]:
        return f"{where}: expected a list of 2 to {MAX_FUNNEL_STEPS} steps"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{where}: expected a mapping, got {type(value).__name__}"
    if kind in ("list_type", "tuple_type"):
        return f"{where}: expected a list, got {type(value).__name__}"
    if kind == "string_pattern_mismatch":
        return f"{where}: {value!r} does not match {err['ctx']['pattern']}"
    return f"{where}: {err['msg'].removeprefix('Value error, ')}"
