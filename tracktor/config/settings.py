"""The sections of tracktor.yaml, each a typed model with its defaults here and nowhere else."""
from __future__ import annotations

import ipaddress
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tracktor.config.definitions import Funnel, Metric
from tracktor.config.types import Bool, Duration, Identifier, Int, Model, Port, PositiveInt, Text

ADVANCED_EVENTS = ("visited_site", "cart_abandoned", "cart_canceled", "cart_purchased")
EMBEDDED = "embedded"


class Topics(Model):
    """Topic names by role. Every topic carries JSON described by schemas/<name>.schema.json."""
    raw: Text = "tracktor.raw"                  # accepted tracking calls (the collector)
    events: Text = "tracktor.events"            # resolved events, person_id canonical (identity_merge)
    identities: Text = "tracktor.identities"    # distinct id -> person changes
    profiles: Text = "tracktor.profiles"        # person property snapshots
    derived: Text = "tracktor.derived"          # events the pipeline makes (cart_timeout)
    segments: Text = "tracktor.segments"        # segment entered / exited (segment_eval)
    dead_letter: Text = "tracktor.deadletter"   # records a job could not use, with the reason
    handoffs: Text = "tracktor.handoffs"        # a merged-away person's state, to its survivor (per-person jobs)
    control: Text = "tracktor.control"          # definition changes while the jobs run (segments, campaigns)
    actions: Text = "tracktor.actions"          # what campaigns and newsletters ask to be done (workflow_runner)
    inapp: Text = "tracktor.inapp"              # in-app messages for the apps to show (bin/tracktor deliver)

    @model_validator(mode="after")
    def _distinct(self):
        names = list(self.model_dump().values())
        if len(set(names)) != len(names):
            raise ValueError("two roles share one topic name")
        return self

    def by_role(self) -> dict[str, str]:
        return self.model_dump()


class KafkaSettings(Model):
    # "embedded" = the broker `bin/tracktor kafka start [--brokers 3]` runs on 127.0.0.1;
    # otherwise host:port[,host:port…] of a real cluster.
    bootstrap_servers: Text
    partitions: PositiveInt = 4       # for topics Tracktor creates
    # Their replicas; unset: the cluster's default.replication.factor (1 on the embedded
    # single broker, 3 on its cluster).
    replication_factor: PositiveInt | None = None
    topics: Topics = Topics()


def _relative_to_file(path: str, info: ValidationInfo) -> Path:
    """A path as written in the file: absolute, or relative to the file's folder."""
    base = (info.context or {}).get("base", Path.cwd())
    return (Path(base) / path).resolve()


class WarehouseHttp(Model):
    """The embedded warehouse's ClickHouse HTTP interface, served by whichever process owns
    the warehouse (docs/warehouse.md)."""
    host: Text = "127.0.0.1"    # loopback only: the endpoint has no TLS
    port: Port = 8123           # 0: a free port; either way the one in use is in <warehouse>.owner.json

    @field_validator("host")
    @classmethod
    def _loopback(cls, host: str) -> str:
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"the embedded warehouse serves this machine only: expected 127.0.0.1, ::1 or "
                             f"localhost, got {host!r} (other machines need a ClickHouse server)")
        return host


class WarehouseUser(Model):
    # None: generated on the warehouse's first start and kept in <warehouse>.users.json (mode 0600)
    password: Text | None = None


class WarehouseUsers(Model):
    writer: WarehouseUser = WarehouseUser()   # what Tracktor's own processes log in as (by themselves)
    reader: WarehouseUser = WarehouseUser()   # readonly, no files or URLs: for BI tools


class ClickHouseSettings(Model):
    """`dsn`: chdb:///ABSOLUTE/PATH (clickhouse-connect's convention), chdb:RELATIVE/PATH
    (relative to the config file), chdb://memory, or http(s)://user:pass@host:port of a
    ClickHouse server. Loaded, a chdb path is always absolute: chdb:///…
    `http` and `users` are the embedded warehouse's (a chdb path), not a server's."""
    dsn: Text
    database: Identifier = "tracktor"
    http: WarehouseHttp = WarehouseHttp()
    users: WarehouseUsers = WarehouseUsers()
    # metric_rollup inserts each bundle of rows at most this long after its first record (and
    # before every checkpoint): it bounds the inserts per second per table, and adds up to
    # this much to the warehouse's freshness (tracktor.yaml says what it measured).
    insert_max_delay_ms: PositiveInt = 100

    @field_validator("dsn")
    @classmethod
    def _resolve(cls, dsn: str, info: ValidationInfo) -> str:
        if dsn.startswith(("http://", "https://")) or dsn in ("chdb://", "chdb://memory"):
            return dsn
        if dsn.startswith("chdb:///"):
            return "chdb://" + str(Path(dsn[len("chdb://"):]).resolve())
        if dsn.startswith("chdb://"):
            raise ValueError(f"{dsn!r} is ambiguous: write chdb:///ABSOLUTE/PATH, or chdb:RELATIVE/PATH for a "
                             "folder relative to this file")
        if dsn.startswith("chdb:") and dsn[len("chdb:"):].strip():
            return "chdb://" + str(_relative_to_file(dsn[len("chdb:"):], info))
        raise ValueError(f"expected chdb:PATH, chdb:///ABSOLUTE/PATH or http(s)://host:port, got {dsn!r}")

    @property
    def chdb_path(self) -> Path | None:
        """The embedded warehouse's folder (the DSN resolved when the file was loaded), or None."""
        return Path(self.dsn[len("chdb://"):]) if self.dsn.startswith("chdb:///") else None


class JobFlinkSettings(Model):
    """`flink.jobs.NAME`: what one job sets otherwise than the `flink:` section."""
    # identity_merge's checkpoints are the first hop of every call (its output is readable
    # once they commit): a shorter interval there moves every freshness figure
    # (docs/performance.md).
    checkpoint_interval_ms: Annotated[Int, Field(ge=100)] | None = None


class FlinkSettings(Model):
    parallelism: PositiveInt = 1
    execution_mode: Literal["thread", "process"] = "thread"   # PyFlink's Python worker mode
    state_backend: Literal["hashmap", "rocksdb"] = "hashmap"
    # Checkpoints write the state's changes (Flink's changelog, beside the checkpoints; on a
    # cluster where its TaskManagers' config says), not all of it; the whole state is written
    # once a minute (docs/performance.md).
    state_changelog: Bool = True
    checkpoint_interval_ms: Annotated[Int, Field(ge=100)] = 1000
    checkpoint_dir: Path = Path(".data/checkpoints")
    restart_attempts: Annotated[Int, Field(ge=0)] = 3   # a failing job is retried this often (2 s apart)
    # Records reach the Python functions in bundles of up to this many per key, none waiting
    # longer than this (bigger bundles: fewer Python calls; the delay bounds the added latency).
    bundle_max_records: PositiveInt = 500
    bundle_max_delay_ms: PositiveInt = 100
    taskmanager_memory: Text = "2g"
    # Options for the JVM a job starts with its embedded mini-cluster (`bin/tracktor job`, the
    # demo, the tests; not a cluster's JobManager and TaskManagers), passed as
    # JAVA_TOOL_OPTIONS. C1 only: on 2 cores the five jobs start in half the time and the
    # optimising compiler no longer takes a share of every core (docs/performance.md).
    jvm_options: str = "-XX:TieredStopAtLevel=1"
    # A job run by `bin/tracktor job` serves Flink's REST API (for `bin/tracktor status`) on
    # the first free port of this range, on 127.0.0.1.
    rest_ports: Annotated[Text, Field(pattern=r"^\d+-\d+$")] = "18081-18180"
    # Time (docs/architecture.md): records may come this much out of order before a timer
    # would fire early; a job writes its clock into its outputs at most this often; a
    # partition with nothing, not even a heartbeat, for this long stops holding back the clock
    # (0: never). Longer than a writer's restart: what a partition brings after it was left
    # out may be late, and decided otherwise than in time.
    allowed_disorder: Duration = 2.0
    heartbeat_interval_ms: PositiveInt = 1000
    idle_partition_timeout: Annotated[Duration, Field(ge=0)] = 60.0
    # The per-person jobs (segment_eval, cart_timeout) key by person bucket: this many buckets
    # (at most this many subtasks share their work; a bucket holds many persons).
    person_buckets: PositiveInt = 128
    jobs: dict[str, JobFlinkSettings] = {}   # per job, by name (jobs.NAMES)

    _checkpoints_relative = field_validator("checkpoint_dir")(classmethod(
        lambda cls, v, info: _relative_to_file(v, info)))

    @field_validator("jobs")
    @classmethod
    def _known_jobs(cls, per_job: dict) -> dict:
        import jobs
        unknown = sorted(set(per_job) - set(jobs.NAMES))
        if unknown:
            raise ValueError(f"no job {', '.join(map(repr, unknown))} (jobs: {', '.join(jobs.NAMES)})")
        return per_job

    def for_job(self, name: str, execution_mode: str | None = None) -> "FlinkSettings":
        """These settings as job `name` runs with them: its `jobs.NAME` entry over the rest,
        and the execution mode its declaration forces."""
        own = self.jobs.get(name)
        update = own.model_dump(exclude_none=True) if own else {}
        if execution_mode:
            update["execution_mode"] = execution_mode
        return self.model_copy(update=update) if update else self


class CollectorSettings(Model):
    host: Text = "127.0.0.1"          # 0.0.0.0 to serve other machines
    port: Port = 8080
    workers: PositiveInt = 1          # processes serving the port (about one per core)
    public_url: Text | None = None    # where browsers reach it, when not the address they fetched tio.js from
    max_body_bytes: PositiveInt = 1024 * 1024   # POST /batch bodies above this get 413
    max_batch_calls: PositiveInt = 1000
    # Self-defence (tracktor/collector/connection.py): a request's head must come within
    # head_timeout of its first byte and its body within body_timeout (else 408); an idle
    # kept-alive connection closes after idle_timeout; past max_connections a new one gets
    # 503; a connection whose request waits for Kafka reads on up to max_buffered_bytes.
    head_timeout: Annotated[Duration, Field(gt=0)] = 10.0
    body_timeout: Annotated[Duration, Field(gt=0)] = 30.0
    idle_timeout: Annotated[Duration, Field(gt=0)] = 60.0
    max_connections: PositiveInt = 10_000
    max_buffered_bytes: PositiveInt = 2 * 1024 * 1024
    heartbeat_interval_ms: PositiveInt = 1000   # the collector's clock into every raw partition

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, url):
        return url.rstrip("/") if url else url


class SmtpSettings(Model):
    host: Text = "127.0.0.1"
    port: Port = 25
    tls: Literal["none", "starttls", "ssl"] = "none"   # ssl: SMTPS (465); starttls: upgrade on 587
    username: Text | None = None
    password: Text | None = None
    sender: Text = "Tracktor <noreply@localhost>"     # the letters' From
    timeout: Annotated[Duration, Field(gt=0)] = 10.0


class DeliverySettings(Model):
    """`bin/tracktor deliver` (tracktor/delivery/): how actions are performed and retried."""
    smtp: SmtpSettings = SmtpSettings()
    max_attempts: PositiveInt = 8              # then the action is recorded as failed
    backoff: Annotated[Duration, Field(gt=0)] = 1.0       # before the second attempt; doubles each time
    max_backoff: Annotated[Duration, Field(gt=0)] = 30.0
    webhook_timeout: Annotated[Duration, Field(gt=0)] = 10.0
    # Where letters' open pixel and links point (the collector's /o/ and /c/); default: the
    # collector's public_url, else http://collector.host:collector.port.
    tracking_url: Text | None = None
    state: Text = "delivery.sqlite"            # the actions performed (idempotence), in data_dir

    @field_validator("tracking_url")
    @classmethod
    def _no_trailing_slash(cls, url):
        return url.rstrip("/") if url else url


class ApiSettings(Model):
    host: Text = "127.0.0.1"
    port: Port = 8081
    threads: PositiveInt = 8                # requests served at once; the rest wait
    request_timeout: Annotated[Duration, Field(gt=0)] = 30.0   # to send a request
    query_timeout: Annotated[Duration, Field(gt=0)] = 60.0     # ClickHouse's max_execution_time per query
    max_range_days: PositiveInt = 400       # the longest custom date range


class IdentitySettings(Model):
    # Properties of a person who is still anonymous are forgotten this long after their last
    # change (processing time); identified persons and id redirects are kept for good.
    anonymous_retention: Annotated[Duration, Field(ge=1)] = 90 * 86400.0


class AutoEventRule(Model):
    event: Text


class PageViewRule(AutoEventRule):
    url: Text   # a regular expression on the page's URL

    @field_validator("url")
    @classmethod
    def _regex(cls, url: str) -> str:
        try:
            re.compile(url)
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from None
        return url


class ClickRule(AutoEventRule):
    selector: Text   # a CSS selector


class AutoEvents(Model):
    page_views: tuple[PageViewRule, ...] = ()
    clicks: tuple[ClickRule, ...] = ()

    def for_library(self) -> dict:
        """The settings tio.js reads."""
        return {"pageViews": [r.model_dump() for r in self.page_views], "clicks": [r.model_dump() for r in self.clicks]}


def _named(node: Any) -> Any:
    """{name: definition} -> the same with each definition told its name."""
    if isinstance(node, dict):
        return {name: {**d, "name": name} if isinstance(d, dict) else d for name, d in node.items()}
    return node


class App(Model):
    sid: Text
    name: Text
    secret: Text                      # signs identities (secure mode); never a read credential
    read_token: Text | None = None    # reads the app's analytics (API, dashboard); none: not readable
    admin_token: Text | None = None   # changes its segments and deletes its people (API); none: no changes by API
    signed_only: Bool = False
    history_start: date = date(2000, 1, 1)   # calls with an earlier ts are refused
    cart_timeout: Duration = 30 * 60.0
    visit_gap: Duration = 30 * 60.0
    advanced_events: tuple[Literal[ADVANCED_EVENTS], ...] = ADVANCED_EVENTS
    auto_events: AutoEvents = AutoEvents()
    funnels: dict[str, Funnel] = {}
    metrics: dict[str, Metric] = {}
    segments: dict[str, Any] = {}
    campaigns: dict[str, Any] = {}    # workflow campaigns (docs/workflows.md)

    _named = field_validator("funnels", "metrics", mode="before")(classmethod(lambda cls, v: _named(v)))

    @field_validator("segments")
    @classmethod
    def _segments_valid(cls, segments: dict) -> dict:
        from udfs.segment_rules import parse_segment
        for name, node in segments.items():
            parse_segment(name, node)  # ValueError naming the segment and the condition
        return segments

    @field_validator("campaigns")
    @classmethod
    def _campaigns_valid(cls, campaigns: dict) -> dict:
        from udfs.campaigns import branch_keys, check_no_loops, parse_campaign
        check_no_loops({name: parse_campaign(name, node) for name, node in campaigns.items()})  # ValueError naming it
        return {name: branch_keys(node) for name, node in campaigns.items()}

    def campaign_definitions(self) -> dict:
        from udfs.campaigns import parse_campaign
        return {name: parse_campaign(name, node) for name, node in self.campaigns.items()}

    def segment_definitions(self) -> dict:
        from udfs.segment_rules import parse_segment
        return {name: parse_segment(name, node) for name, node in self.segments.items()}

    @property
    def history_start_ms(self) -> int:
        return int(datetime(self.history_start.year, self.history_start.month, self.history_start.day,
                            tzinfo=timezone.utc).timestamp() * 1000)

    @field_validator("sid")
    @classmethod
    def _sid(cls, sid: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", sid):
            raise ValueError(f"expected 1-64 letters, digits, '.', '_' or '-', got {sid!r}")
        return sid

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_sid(cls, node):
        if isinstance(node, dict) and "name" not in node and isinstance(node.get("sid"), str):
            return {**node, "name": node["sid"]}
        return node


def _merged(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class LogSettings(Model):
    format: Literal["text", "json"] = "text"   # json: one object per line, for a log collector
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Config(Model):
    path: Path                        # the file it was read from
    data_dir: Path = Path(".data")    # broker logs, checkpoints, the embedded warehouse
    kafka: KafkaSettings
    clickhouse: ClickHouseSettings
    flink: FlinkSettings = FlinkSettings()
    collector: CollectorSettings = CollectorSettings()
    api: ApiSettings = ApiSettings()
    identity: IdentitySettings = IdentitySettings()
    delivery: DeliverySettings = DeliverySettings()
    logging: LogSettings = LogSettings()
    app_list: Annotated[tuple[App, ...], Field(alias="apps", min_length=1)]

    _data_relative = field_validator("data_dir")(classmethod(lambda cls, v, info: _relative_to_file(v, info)))

    @model_validator(mode="after")
    def _unique_sids(self):
        seen = set()
        for i, app in enumerate(self.app_list):
            if app.sid in seen:
                raise ValueError(f"apps[{i}].sid: duplicate sid {app.sid!r}")
            seen.add(app.sid)
        return self

    @property
    def apps(self) -> dict[str, App]:
        """Apps by sid (built on each use: hold on to it in a hot path)."""
        return {a.sid: a for a in self.app_list}

    @property
    def topics(self) -> dict[str, str]:
        """Topic names by role."""
        return self.kafka.topics.by_role()

    def updated(self, **sections) -> "Config":
        """This configuration with some values changed, validated again: each keyword is a
        top-level key whose mapping is merged in (`flink={"parallelism": 2}`); `apps` is a
        list of apps (App objects or mappings) that replaces the old one."""
        tree = self.model_dump(by_alias=True)
        for key, value in sections.items():
            if key == "apps":
                tree["apps"] = [a.model_dump() if isinstance(a, App) else a for a in value]
            elif isinstance(value, dict) and isinstance(tree.get(key), dict):
                tree[key] = _merged(tree[key], value)
            else:
                tree[key] = value
        return type(self).model_validate(tree, context={"base": self.path.parent})

    @property
    def tracking_url(self) -> str:
        """Where letters' tracking links point: the collector, as browsers reach it."""
        c = self.collector
        return self.delivery.tracking_url or c.public_url or f"http://{c.host}:{c.port}"

    def app(self, sid: str) -> App:
        if sid not in self.apps:
            raise KeyError(f"no app with sid {sid!r} (known: {', '.join(self.apps)})")
        return self.apps[sid]
