"""Load and validate tracktor.yaml into plain values.

Every error names the key path and what is wrong, e.g.
``tracktor.yaml: apps[1].cart_timeout: expected a duration like 30m, got 'soon'``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tracktor import ROOT

DEFAULT_PATH = ROOT / "tracktor.yaml"
TOPIC_ROLES = ("raw", "events", "identities", "profiles", "derived", "segments", "dead_letter")
ADVANCED_EVENTS = ("visited_site", "cart_abandoned", "cart_canceled", "cart_purchased")
# Metric types and the names each needs (tracktor/analytics.py answers them); besides,
# conversion_rate takes `repeatable: true|false` (default false), total_property_value
# `criteria` (a list of property criteria, default none), and average_property_value
# `divide_by: people|event_people|sets` (default people; event_people needs `event`).
METRIC_TYPES = {
    "people_did_event": ("event",),
    "times_event_happened": ("event",),
    "avg_times_per_person": ("event",),
    "conversion_rate": ("event_a", "event_b"),
    "avg_time_between": ("event_a", "event_b"),
    "total_property_value": ("property",),
    "average_property_value": ("property",),
}
DIVIDE_BY = ("people", "event_people", "sets")
# Property criteria operators (the SQL function tracktor_test in sql/migrations/0007).
CRITERIA_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "set", "not_set")
MAX_FUNNEL_STEPS = 32  # windowFunnel's limit: the funnel views have one condition per possible step
_DURATION = re.compile(r"^(\d+)\s*(ms|s|m|h|d)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Criterion:
    """`property op value`, e.g. plan eq "premium"; `value` is any JSON value (None for set/not_set)."""
    property: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class Funnel:
    name: str
    steps: tuple[str, ...]
    window_seconds: float | None = None  # None: the whole date range
    step_filters: tuple[tuple[Criterion, ...], ...] = ()  # per step, on the event's data; () = none
    people_filter: tuple[Criterion, ...] = ()  # on the person's current properties


@dataclass(frozen=True)
class Metric:
    name: str
    type: str
    params: dict


@dataclass(frozen=True)
class App:
    sid: str
    name: str
    secret: str
    signed_only: bool
    cart_timeout_seconds: float
    visit_gap_seconds: float
    advanced_events: frozenset[str]
    auto_events: dict  # {"pageViews": [{"event", "url"}], "clicks": [{"event", "selector"}]} for tio.js
    funnels: dict[str, Funnel]
    metrics: dict[str, Metric]
    segments: dict[str, dict]


@dataclass(frozen=True)
class Config:
    path: Path
    data_dir: Path
    kafka: dict
    topics: dict[str, str]
    clickhouse: dict
    flink: dict
    identity: dict = field(default_factory=dict)
    collector: dict = field(default_factory=dict)
    api: dict = field(default_factory=dict)
    apps: dict[str, App] = field(default_factory=dict)

    def app(self, sid: str) -> App:
        if sid not in self.apps:
            raise ConfigError(f"{self.path}: no app with sid {sid!r} (known: {', '.join(self.apps)})")
        return self.apps[sid]


def parse_duration(value: Any, where: str) -> float:
    """Seconds from a number of seconds or a string like '90s', '30m', '2h', '7d'."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration like 30m, got {value!r}")
    if isinstance(value, (int, float)) and value >= 0:
        return float(value)
    m = _DURATION.match(str(value).strip())
    if not m:
        raise ConfigError(f"{where}: expected a duration like 30m, got {value!r}")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


class _Reader:
    """Walks the YAML tree, remembering the path for error messages."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, what: str):
        raise ConfigError(f"{self.source}: {where}: {what}")

    def mapping(self, node, where: str, required=(), optional=()) -> dict:
        if not isinstance(node, dict):
            self.fail(where, f"expected a mapping, got {type(node).__name__}")
        for key in required:
            if key not in node:
                self.fail(where, f"missing key {key!r}")
        unknown = set(node) - set(required) - set(optional)
        if unknown:
            self.fail(where, f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        return node

    def string(self, node, where: str) -> str:
        if not isinstance(node, str) or not node.strip():
            self.fail(where, f"expected a non-empty string, got {node!r}")
        return node

    def integer(self, node, where: str, minimum: int = 1) -> int:
        if isinstance(node, bool) or not isinstance(node, int) or node < minimum:
            self.fail(where, f"expected an integer >= {minimum}, got {node!r}")
        return node

    def boolean(self, node, where: str) -> bool:
        if not isinstance(node, bool):
            self.fail(where, f"expected true or false, got {node!r}")
        return node

    def choice(self, node, where: str, choices) -> str:
        if node not in choices:
            self.fail(where, f"expected one of {', '.join(choices)}, got {node!r}")
        return node

    def duration(self, node, where: str) -> float:
        try:
            return parse_duration(node, where)
        except ConfigError as e:
            raise ConfigError(f"{self.source}: {e}") from None


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
    r = _Reader(str(path))
    base = path.parent
    top = r.mapping(tree, "(top)", required=("kafka", "clickhouse", "flink", "apps"), optional=("data_dir", "identity", "collector", "api"))
    data_dir = (base / r.string(top.get("data_dir", ".data"), "data_dir")).resolve()

    kafka = r.mapping(top["kafka"], "kafka", required=("bootstrap_servers", "topics"), optional=("partitions",))
    bootstrap = r.string(kafka["bootstrap_servers"], "kafka.bootstrap_servers")
    partitions = r.integer(kafka.get("partitions", 4), "kafka.partitions")
    topics_node = r.mapping(kafka["topics"], "kafka.topics", required=TOPIC_ROLES)
    topics = {role: r.string(topics_node[role], f"kafka.topics.{role}") for role in TOPIC_ROLES}
    if len(set(topics.values())) != len(topics):
        r.fail("kafka.topics", "two roles share one topic name")

    ch = r.mapping(top["clickhouse"], "clickhouse", required=("dsn",), optional=("database",))
    dsn = r.string(ch["dsn"], "clickhouse.dsn")
    if dsn.startswith("chdb://") and dsn not in ("chdb://", "chdb://memory") and not dsn.startswith("chdb:////"):
        # chdb:///relative/path → absolute, relative to the config file
        dsn = "chdb://" + str((base / dsn[len("chdb:///"):]).resolve())
    elif not dsn.startswith(("chdb://", "http://", "https://", "clickhouse://")):
        r.fail("clickhouse.dsn", f"expected chdb:///path or http(s)://host:port, got {dsn!r}")
    database = r.string(ch.get("database", "tracktor"), "clickhouse.database")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", database):
        r.fail("clickhouse.database", f"expected an identifier, got {database!r}")

    fl = r.mapping(top["flink"], "flink", optional=(
        "parallelism", "execution_mode", "state_backend", "checkpoint_interval_ms", "checkpoint_dir",
        "restart_attempts", "bundle_max_records", "bundle_max_delay_ms"))
    flink = {
        "parallelism": r.integer(fl.get("parallelism", 1), "flink.parallelism"),
        "execution_mode": r.choice(fl.get("execution_mode", "thread"), "flink.execution_mode", ("thread", "process")),
        "state_backend": r.choice(fl.get("state_backend", "hashmap"), "flink.state_backend", ("hashmap", "rocksdb")),
        "checkpoint_interval_ms": r.integer(fl.get("checkpoint_interval_ms", 5000), "flink.checkpoint_interval_ms", 100),
        "restart_attempts": r.integer(fl.get("restart_attempts", 3), "flink.restart_attempts", 0),
        "bundle_max_records": r.integer(fl.get("bundle_max_records", 500), "flink.bundle_max_records"),
        "bundle_max_delay_ms": r.integer(fl.get("bundle_max_delay_ms", 100), "flink.bundle_max_delay_ms"),
        "checkpoint_dir": str((base / r.string(fl.get("checkpoint_dir", ".data/checkpoints"), "flink.checkpoint_dir")).resolve()),
    }

    idn = r.mapping(top.get("identity") or {}, "identity", optional=("anonymous_retention",))
    identity = {"anonymous_retention_seconds": r.duration(idn.get("anonymous_retention", "90d"), "identity.anonymous_retention")}
    if identity["anonymous_retention_seconds"] < 1:
        r.fail("identity.anonymous_retention", "must be at least 1s")

    co = r.mapping(top.get("collector") or {}, "collector", optional=(
        "host", "port", "workers", "max_body_bytes", "max_batch_calls", "public_url"))
    collector = {
        "host": r.string(co.get("host", "127.0.0.1"), "collector.host"),
        "port": r.integer(co.get("port", 8080), "collector.port", 0),
        "workers": r.integer(co.get("workers", 1), "collector.workers", 1),
        "max_body_bytes": r.integer(co.get("max_body_bytes", 1024 * 1024), "collector.max_body_bytes"),
        "max_batch_calls": r.integer(co.get("max_batch_calls", 1000), "collector.max_batch_calls"),
        "public_url": co.get("public_url") and r.string(co["public_url"], "collector.public_url").rstrip("/"),
    }

    ap = r.mapping(top.get("api") or {}, "api", optional=("host", "port"))
    api = {"host": r.string(ap.get("host", "127.0.0.1"), "api.host"), "port": r.integer(ap.get("port", 8081), "api.port", 0)}

    if not isinstance(top["apps"], list) or not top["apps"]:
        r.fail("apps", "expected a non-empty list of apps")
    apps: dict[str, App] = {}
    for i, node in enumerate(top["apps"]):
        app = _parse_app(r, node, f"apps[{i}]")
        if app.sid in apps:
            r.fail(f"apps[{i}].sid", f"duplicate sid {app.sid!r}")
        apps[app.sid] = app

    return Config(
        path=path, data_dir=data_dir,
        kafka={"bootstrap_servers": bootstrap, "partitions": partitions},
        topics=topics, clickhouse={"dsn": dsn, "database": database}, flink=flink, identity=identity, collector=collector, api=api,
        apps=apps,
    )


def _parse_app(r: _Reader, node, where: str) -> App:
    a = r.mapping(node, where, required=("sid", "secret"), optional=(
        "name", "signed_only", "cart_timeout", "visit_gap", "advanced_events", "auto_events", "funnels", "metrics",
        "segments"))
    sid = r.string(a["sid"], f"{where}.sid")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", sid):
        r.fail(f"{where}.sid", f"expected 1-64 letters, digits, '.', '_' or '-', got {sid!r}")
    advanced = a.get("advanced_events", list(ADVANCED_EVENTS))
    if not isinstance(advanced, list):
        r.fail(f"{where}.advanced_events", "expected a list")
    for j, ev in enumerate(advanced):
        r.choice(ev, f"{where}.advanced_events[{j}]", ADVANCED_EVENTS)

    auto = r.mapping(a.get("auto_events") or {}, f"{where}.auto_events", optional=("page_views", "clicks"))
    auto_events = {"pageViews": [], "clicks": []}
    for key, field_name, out in (("page_views", "url", "pageViews"), ("clicks", "selector", "clicks")):
        rules = auto.get(key) or []
        if not isinstance(rules, list):
            r.fail(f"{where}.auto_events.{key}", "expected a list")
        for j, rule in enumerate(rules):
            rw = f"{where}.auto_events.{key}[{j}]"
            rule = r.mapping(rule, rw, required=("event", field_name))
            value = r.string(rule[field_name], f"{rw}.{field_name}")
            if key == "page_views":
                try:
                    re.compile(value)
                except re.error as e:
                    r.fail(f"{rw}.url", f"not a regular expression: {e}")
            auto_events[out].append({"event": r.string(rule["event"], f"{rw}.event"), field_name: value})

    funnels = {name: _parse_funnel(r, name, f, f"{where}.funnels.{name}") for name, f in
               r.mapping(a.get("funnels", {}) or {}, f"{where}.funnels", optional=a.get("funnels", {}) or {}).items()}
    metrics = {name: _parse_metric(r, name, m, f"{where}.metrics.{name}") for name, m in
               r.mapping(a.get("metrics", {}) or {}, f"{where}.metrics", optional=a.get("metrics", {}) or {}).items()}

    segments = r.mapping(a.get("segments", {}) or {}, f"{where}.segments", optional=a.get("segments", {}) or {})
    return App(
        sid=sid,
        name=str(a.get("name", sid)),
        secret=r.string(a["secret"], f"{where}.secret"),
        signed_only=r.boolean(a.get("signed_only", False), f"{where}.signed_only"),
        cart_timeout_seconds=r.duration(a.get("cart_timeout", "30m"), f"{where}.cart_timeout"),
        visit_gap_seconds=r.duration(a.get("visit_gap", "30m"), f"{where}.visit_gap"),
        advanced_events=frozenset(advanced), auto_events=auto_events,
        funnels=funnels, metrics=metrics, segments=dict(segments),
    )


def funnel_from(name: str, node, source: str = "funnel") -> Funnel:
    """A funnel defined ad hoc (command line, HTTP API), validated like one in tracktor.yaml."""
    return _parse_funnel(_Reader(source), name, node, name)


def metric_from(name: str, node, source: str = "metric") -> Metric:
    """A metric defined ad hoc, validated like one in tracktor.yaml."""
    return _parse_metric(_Reader(source), name, node, name)


def _parse_criteria(r: _Reader, node, where: str) -> tuple[Criterion, ...]:
    if not isinstance(node, list):
        r.fail(where, "expected a list of {property, op, value}")
    out = []
    for i, c in enumerate(node):
        cw = f"{where}[{i}]"
        c = r.mapping(c, cw, required=("property", "op"), optional=("value",))
        op = r.choice(c["op"], f"{cw}.op", CRITERIA_OPS)
        if op in ("set", "not_set"):
            if c.get("value") is not None:
                r.fail(f"{cw}.value", f"{op!r} takes no value")
        elif "value" not in c or c["value"] is None:
            r.fail(cw, f"{op!r} needs a value (use not_set for a missing property)")
        elif op in ("gt", "gte", "lt", "lte") and (isinstance(c["value"], bool) or not isinstance(c["value"], (int, float))):
            r.fail(f"{cw}.value", f"{op!r} compares numbers, got {c['value']!r}")
        out.append(Criterion(r.string(c["property"], f"{cw}.property"), op, c.get("value")))
    return tuple(out)


def _parse_funnel(r: _Reader, name: str, node, where: str) -> Funnel:
    f = r.mapping(node, where, required=("steps",), optional=("window", "people"))
    steps = f["steps"]
    if not isinstance(steps, list) or not 2 <= len(steps) <= MAX_FUNNEL_STEPS:
        r.fail(f"{where}.steps", f"expected a list of 2 to {MAX_FUNNEL_STEPS} steps")
    events, filters = [], []
    for k, step in enumerate(steps):
        sw = f"{where}.steps[{k}]"
        if isinstance(step, dict):  # {event: name, where: [criteria on the event's data]}
            step = r.mapping(step, sw, required=("event",), optional=("where",))
            events.append(r.string(step["event"], f"{sw}.event"))
            filters.append(_parse_criteria(r, step.get("where") or [], f"{sw}.where"))
        else:
            events.append(r.string(step, sw))
            filters.append(())
    return Funnel(
        name=name, steps=tuple(events),
        window_seconds=r.duration(f["window"], f"{where}.window") if f.get("window") is not None else None,
        step_filters=tuple(filters) if any(filters) else (),
        people_filter=_parse_criteria(r, f.get("people") or [], f"{where}.people"),
    )


def _parse_metric(r: _Reader, name: str, node, where: str) -> Metric:
    m = r.mapping(node, where, required=("type",), optional=("repeatable", "criteria", "divide_by") + tuple(
        k for fields in METRIC_TYPES.values() for k in fields))
    mtype = r.choice(m["type"], f"{where}.type", tuple(METRIC_TYPES))
    params: dict[str, Any] = {}
    for key in METRIC_TYPES[mtype]:
        if key not in m:
            r.fail(where, f"a {mtype} metric needs {key!r}")
        params[key] = r.string(m[key], f"{where}.{key}")
    if "repeatable" in m:
        if mtype != "conversion_rate":
            r.fail(f"{where}.repeatable", "only a conversion_rate metric is repeatable or not")
        params["repeatable"] = r.boolean(m["repeatable"], f"{where}.repeatable")
    if "criteria" in m:
        if mtype != "total_property_value":
            r.fail(f"{where}.criteria", "only a total_property_value metric takes criteria")
        params["criteria"] = _parse_criteria(r, m["criteria"], f"{where}.criteria")
    if mtype == "average_property_value":
        params["divide_by"] = r.choice(m.get("divide_by", "people"), f"{where}.divide_by", DIVIDE_BY)
        if params["divide_by"] == "event_people":
            params["event"] = r.string(m.get("event"), f"{where}.event")
        elif "event" in m:
            r.fail(f"{where}.event", "only divide_by: event_people takes an event")
    elif "divide_by" in m:
        r.fail(f"{where}.divide_by", "only an average_property_value metric is divided by something")
    return Metric(name=name, type=mtype, params=params)
