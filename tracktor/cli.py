"""`tracktor` — the one command: `bin/tracktor <command>` (it sets up on first use).

  kafka start|stop|status   the embedded broker (background); start --brokers 3: a 3-node cluster
  flink start|stop|status   a Flink session cluster on loopback (--taskmanagers N, default 2)
  flink run NAME            submit a job to it: flink run --python jobs/NAME.py (attached)
  collector                 the HTTP tracking API (GET /track /set /alias, POST /batch)
  topics                    create Tracktor's topics where missing
  migrate                   create or update the ClickHouse tables
  generate                  write sample tracking calls as JSON lines
  load                      send sample tracking calls to tracktor.raw
  job NAME [--bounded]      run one Flink job (jobs/NAME.py); SIGTERM stops it with a savepoint
  status [--json]           each job: state, records/s, last checkpoint, lag per input, dead letters
  report funnel|metric|segment NAME   answers read from ClickHouse
  segments apply FILE|delete NAME    change segments while segment_eval runs
  people delete APP ID               delete a person, all their ids and data
  serve                     the analytics JSON API and charts over HTTP
  warehouse serve           own the embedded warehouse and serve its ClickHouse HTTP interface
  demo                      the whole pipeline over sample data, with results
  bench [--quick]           every benchmark into one table (bench/suite.py)

--config FILE (default: tracktor.yaml) goes before or after the command.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from datetime import date

from tracktor import config as config_mod


def _cfg(args) -> config_mod.Config:
    return config_mod.load(args.config)


def cmd_kafka(args) -> int:
    from tracktor import topics
    from tracktor.dev import stack
    cfg = _cfg(args)
    if args.action == "start":
        address = stack.start_embedded(cfg, args.brokers)
        created = topics.ensure_topics(address, cfg.kafka)
        print(f"embedded Kafka at {address}" + (f"; created {', '.join(created)}" if created else ""))
    elif args.action == "stop":
        print("stopped" if stack.stop_embedded(cfg) else "not running")
    else:
        address = stack.running_embedded(cfg)
        serving, started = stack.embedded_state(cfg)
        if address:
            print(f"running at {address}")
        else:
            print(f"{serving} of {started} nodes running: `kafka start` starts the others" if serving
                  else "not running")
        return 0 if address else 1
    return 0


def cmd_topics(args) -> int:
    from tracktor import topics
    from tracktor.dev import stack
    cfg = _cfg(args)
    created = topics.ensure_topics(stack.resolve_bootstrap(cfg), cfg.kafka)
    print(f"created: {', '.join(created)}" if created else "all topics exist")
    return 0


def cmd_migrate(args) -> int:
    from tracktor import warehouse
    cfg = _cfg(args)
    client = warehouse.connect(cfg.clickhouse)
    try:
        applied = warehouse.migrate(client, cfg.clickhouse.database)
    finally:
        client.close()
    print(f"applied: {', '.join(applied)}" if applied else "up to date")
    return 0


def _generator(args):
    from tracktor.dev.sample_data import Generator
    return Generator(seed=args.seed, people=args.people)


def cmd_generate(args) -> int:
    out = open(args.out, "w") if args.out else sys.stdout
    for env in _generator(args):
        out.write(json.dumps(env, separators=(",", ":")) + "\n")
    return 0


def cmd_load(args) -> int:
    from tracktor import topics
    from tracktor.dev import loader, stack
    cfg = _cfg(args)
    bootstrap = stack.resolve_bootstrap(cfg)
    topics.ensure_topics(bootstrap, cfg.kafka)
    calls = sorted(_generator(args), key=lambda e: e["received_at"])  # in time order, as they would arrive
    loader.send(bootstrap, cfg.topics["raw"], calls)
    if calls:  # the jobs' clock reaches the end of the sample
        loader.send_heartbeat(bootstrap, cfg.topics["raw"], calls[-1]["received_at"])
    return 0


def cmd_job(args) -> int:
    import jobs
    from tracktor.dev import stack
    from tracktor import logs
    from tracktor.flink import runner
    cfg = _cfg(args)
    logs.setup(cfg.logging)
    runner.run(jobs.load(args.name), cfg, stack.resolve_bootstrap(cfg), args.bounded, args.from_savepoint,
               args.allow_non_restored_state)
    return 0


def cmd_flink(args) -> int:
    import jobs
    from tracktor.dev import flink_cluster
    cfg = _cfg(args)
    if args.action == "run":
        if args.job not in jobs.NAMES:
            raise ValueError(f"flink run takes a job: one of {', '.join(jobs.NAMES)}")
        if jobs.load(args.job).flink_settings(cfg).execution_mode != "process":
            raise ValueError("flink.execution_mode: a cluster runs the jobs in process mode (in thread mode PyFlink "
                             "builds state TTL settings with the client's JVM, which a TaskManager lacks): set it to "
                             "process")
        state = flink_cluster.running(cfg.data_dir)
        if state is None:
            raise RuntimeError("no Flink cluster runs: start one with `bin/tracktor flink start`")
        extra = ["--from-savepoint", str(args.from_savepoint)] if args.from_savepoint else []
        extra += ["--allow-non-restored-state"] if args.allow_non_restored_state else []
        cluster = flink_cluster.LocalFlinkCluster(flink_cluster.cluster_dir(cfg.data_dir))
        client = cluster.submit(args.job, cfg.path, None, *extra)
        try:
            return client.wait()
        except KeyboardInterrupt:  # the client has the Ctrl-C too: let it finish
            return client.wait() or 130
    if args.job:
        raise ValueError(f"flink {args.action} takes no job name")
    if args.action == "start":
        state = flink_cluster.start_background(cfg.data_dir, args.taskmanagers)
        print(f"Flink cluster at {state['rest']}: {state.get('overview', {}).get('taskmanagers', '?')} TaskManagers")
    elif args.action == "stop":
        print("stopped" if flink_cluster.stop_background(cfg.data_dir) else "not running")
    else:
        state = flink_cluster.running(cfg.data_dir)
        if state is None:
            print("not running")
            return 1
        o = state["overview"]
        print(f"running at {state['rest']}: {o['taskmanagers']} TaskManagers, {o['slots-available']} of "
              f"{o['slots-total']} slots free, {o['jobs-running']} jobs running")
    return 0


def cmd_status(args) -> int:
    from tracktor.dev import stack
    from tracktor.flink import status
    cfg = _cfg(args)
    entries = status.status(cfg, stack.resolve_bootstrap(cfg))
    print(json.dumps(entries, indent=2) if args.json else status.render(entries))
    return 0


def cmd_report(args) -> int:
    from tracktor import warehouse
    from tracktor.analytics import report, saved
    cfg = _cfg(args)
    definition = None
    if args.define:
        import yaml
        definition = yaml.safe_load(args.define)
    app = args.app or next(iter(cfg.apps))
    if app not in cfg.apps:
        raise config_mod.ConfigError(f"no app {app!r}")
    fmt = "json" if args.json else "html" if args.html else "table"
    client = warehouse.connect(cfg.clickhouse)
    try:
        warehouse.migrate(client, cfg.clickhouse.database)  # an empty warehouse answers zeros, not errors
        try:
            q = report.ask(cfg, app, args.kind, args.name, definition, args.range, args.date_from, args.date_to,
                           args.people, args.dropped, args.limit, saved=saved.load(client, cfg.clickhouse.database, app))
        except (report.NotFound, ValueError) as e:
            raise config_mod.ConfigError(str(e)) from None
        text = report.render(q, report.answer(client, cfg.clickhouse.database, q), fmt)
    finally:
        client.close()
    if args.html:
        with open(args.html, "w") as f:
            f.write(text)
        print(f"wrote {args.html}")
    else:
        print(text)
    return 0


def cmd_definitions(args) -> int:
    import yaml
    from tracktor import control
    cfg = _cfg(args)
    app = args.app
    if args.action == "apply":
        try:
            changes = yaml.safe_load(open(args.target))
        except (OSError, yaml.YAMLError) as e:
            raise config_mod.ConfigError(f"{args.target}: {e}") from None
    else:
        changes = {args.target: None}
    names = control.publish(cfg, app, args.kind, changes)
    print(f"{'applied' if args.action == 'apply' else 'deleted'}: {', '.join(names)} ({app})")
    return 0


def cmd_deliver(args) -> int:
    import signal

    from tracktor import logs, topics
    from tracktor.delivery.service import Delivery
    from tracktor.dev import stack
    cfg = _cfg(args)
    logs.setup(cfg.logging)
    bootstrap = stack.resolve_bootstrap(cfg)
    topics.ensure_topics(bootstrap, cfg.kafka)
    d = Delivery(cfg, bootstrap)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: d.stop_event.set())
    smtp = cfg.delivery.smtp
    print(f"delivering {cfg.topics['actions']} on {bootstrap}: letters via {smtp.host}:{smtp.port}, "
          f"tracking links to {cfg.tracking_url}", flush=True)
    d.run()
    print(f"stopped: {d.performed} actions performed", flush=True)
    return 0


def cmd_newsletter(args) -> int:
    from tracktor import warehouse
    from tracktor.delivery import newsletter
    cfg = _cfg(args)
    try:
        body = open(args.body).read()
    except OSError as e:
        raise config_mod.ConfigError(f"{args.body}: {e}") from None
    client = warehouse.connect(cfg.clickhouse)
    try:
        n = newsletter.send(cfg, client, args.app, args.name, args.subject, body, tuple(args.segment or ()))
    finally:
        client.close()
    who = f"the members of {', '.join(args.segment)}" if args.segment else "everyone with an email"
    print(f"newsletter {args.name!r} of {args.app}: {n} letters queued for {who} on {cfg.topics['actions']}; "
          f"`bin/tracktor deliver` sends them; statistics: bin/tracktor report campaign newsletter:{args.name} "
          f"--app {args.app}")
    return 0


def cmd_people(args) -> int:
    from tracktor import control
    cfg = _cfg(args)
    control.delete_person(cfg, args.app, args.id)
    print(f"deleting the person {args.id!r} of {args.app} and all their ids: identity_merge, segment_eval, "
          "cart_timeout and metric_rollup carry it out as they read it (docs/privacy.md)")
    return 0


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _serve(cfg, stop, banner: str) -> int:
    """Print the banner, serve (logging as the config says) until SIGINT or SIGTERM, then call `stop`."""
    import signal
    import threading

    from tracktor import logs
    logs.setup(cfg.logging)
    print(banner, flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    stop()
    return 0


def cmd_collector(args) -> int:
    from tracktor import topics
    from tracktor.collector.processes import CollectorProcesses
    from tracktor.dev import stack
    cfg = _cfg(args)
    bootstrap = stack.resolve_bootstrap(cfg)
    topics.ensure_topics(bootstrap, cfg.kafka)
    collector = CollectorProcesses(cfg, bootstrap, args.workers, port=args.port).start()
    return _serve(cfg, collector.stop, f"collector at {collector.address} ({collector.workers} processes) "
                             f"-> {cfg.topics['raw']} on {bootstrap}")


def cmd_serve(args) -> int:
    from tracktor.analytics.api import Api
    cfg = _cfg(args)
    api = Api(cfg, port=args.port).start()
    return _serve(cfg, api.stop, f"dashboard at {api.address}/ and the analytics API at {api.address}/api/v1/apps/<app> "
                                 f"(ClickHouse: {cfg.clickhouse.dsn})")


def cmd_warehouse(args) -> int:
    from tracktor import warehouse
    from tracktor.warehouse.shared import OwnerClient, owner_file, users_file
    cfg = _cfg(args)
    path = cfg.clickhouse.chdb_path
    if path is None:
        raise config_mod.ConfigError(f"clickhouse.dsn is {cfg.clickhouse.dsn}: a ClickHouse server serves itself")
    client = warehouse.connect(cfg.clickhouse)
    if not isinstance(client, OwnerClient):
        client.close()
        raise RuntimeError(f"another process owns {path} and serves it already (see {owner_file(path)})")
    warehouse.migrate(client, cfg.clickhouse.database)
    return _serve(cfg, client.close, f"ClickHouse HTTP interface of {path} at http://{cfg.clickhouse.http.host}:"
                                f"{client.endpoint.port}: users writer and reader, their passwords in "
                                f"clickhouse.users or else {users_file(path)} (docs/warehouse.md)")


def cmd_bench(args) -> int:
    from bench import suite
    return suite.main(quick=args.quick, only=args.only)


def cmd_demo(args) -> int:
    from tracktor.dev.demo import run_demo
    cfg = run_demo(_cfg(args), people=args.people, seed=args.seed)
    if not args.serve:
        return 0
    from tracktor.analytics.api import Api
    api = Api(cfg, port=args.port).start()
    return _serve(cfg, api.stop, f"dashboard at {api.address}/ over the demo's data (Ctrl-C stops)")


def parser() -> argparse.ArgumentParser:
    import jobs
    from tracktor.flink.runner import ALLOW_NON_RESTORED_HELP, BOUNDED_HELP, FROM_SAVEPOINT_HELP

    # --config before the command (the top parser) or after it (each command's parser);
    # SUPPRESS keeps a command's parser from overwriting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="YAML configuration (default: tracktor.yaml)")
    p = argparse.ArgumentParser(prog="tracktor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="YAML configuration (default: tracktor.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name, func, **kw):
        c = sub.add_parser(name, parents=[common], **kw)
        c.set_defaults(func=func)
        return c

    k = command("kafka", cmd_kafka, help="the embedded broker")
    k.add_argument("action", choices=("start", "stop", "status"))
    k.add_argument("--brokers", type=int, default=None, choices=(1, 3, 5), metavar="N",
                   help="start: 1 (a single broker), or a cluster of 3 or 5 nodes on loopback (replication 3, "
                        "min.insync.replicas 2); default: the kind started last, else 1")
    f = command("flink", cmd_flink, help="a Flink session cluster on loopback, and jobs submitted to it")
    f.add_argument("action", choices=("start", "stop", "status", "run"))
    f.add_argument("job", nargs="?", default=None, help="run: the job to submit (flink run --python jobs/JOB.py)")
    f.add_argument("--taskmanagers", type=int, default=2, choices=range(1, 9), metavar="N",
                   help="start: TaskManager processes (1-8, default 2), one slot each")
    f.add_argument("--from-savepoint", type=Path, default=None, help="run: " + FROM_SAVEPOINT_HELP)
    f.add_argument("--allow-non-restored-state", action="store_true", help="run: " + ALLOW_NON_RESTORED_HELP)
    command("topics", cmd_topics, help="create missing topics")
    command("migrate", cmd_migrate, help="create or update ClickHouse tables")

    for name, func, hlp in (("generate", cmd_generate, "sample calls as JSON lines"),
                            ("load", cmd_load, "sample calls to tracktor.raw")):
        g = command(name, func, help=hlp)
        g.add_argument("--seed", type=int, default=1)
        g.add_argument("--people", type=int, default=1000, help="visitors per app")
        if name == "generate":
            g.add_argument("--out", help="file to write (default: stdout)")

    j = command("job", cmd_job, help="run one Flink job")
    j.add_argument("name", choices=jobs.NAMES)
    j.add_argument("--bounded", action="store_true", help=BOUNDED_HELP)
    j.add_argument("--from-savepoint", type=Path, default=None, help=FROM_SAVEPOINT_HELP)
    j.add_argument("--allow-non-restored-state", action="store_true", help=ALLOW_NON_RESTORED_HELP)

    command("status", cmd_status, help="each job's state, lag, records/s, last checkpoint, dead letters").add_argument(
        "--json", action="store_true", help="as JSON")

    r = command("report", cmd_report, help="funnel or metric from ClickHouse")
    r.add_argument("kind", choices=("funnel", "metric", "segment", "campaign"))
    r.add_argument("name", help="a funnel, metric, segment or campaign of the app (newsletters: newsletter:NAME), or a label for --define")
    r.add_argument("--app", help="app sid (default: the first in the config)")
    r.add_argument("--range", default="last-7-days", help="today, last-7-days, last-30-days, last-90-days")
    r.add_argument("--from", dest="date_from", type=date.fromisoformat, help="first day, YYYY-MM-DD")
    r.add_argument("--to", dest="date_to", type=date.fromisoformat, help="last day, YYYY-MM-DD")
    r.add_argument("--people", type=int, metavar="STEP", help="funnel drill-down: the people who reached STEP (1-based)")
    r.add_argument("--dropped", action="store_true", help="with --people: those who reached STEP and went no further")
    r.add_argument("--limit", type=int, default=100, help="with --people: at most this many (default 100)")
    r.add_argument("--define", metavar="YAML", help="an ad hoc definition instead of a named one, e.g. "
                   "'{type: people_did_event, event: Site visit}' or '{steps: [A, B], window: 1d}'")
    out = r.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="JSON instead of a table")
    out.add_argument("--html", metavar="FILE", help="write a chart as a self-contained HTML file")

    for name, kind, job in (("segments", "segment", "segment_eval"), ("campaigns", "campaign", "workflow_runner")):
        sg = command(name, cmd_definitions, help=f"add, change or delete {name} while {job} runs")
        sg.set_defaults(kind=kind)
        sg.add_argument("action", choices=("apply", "delete"))
        sg.add_argument("target", help=f"apply: a YAML file of {{name: definition}}; delete: the {kind}'s name")
        sg.add_argument("--app", required=True, help=f"app sid: the {name} are this app's")

    command("deliver", cmd_deliver, help="perform tracktor.actions: letters over SMTP, webhooks, in-app messages")
    nl = command("newsletter", cmd_newsletter, help="send one letter to an app's people, or to segments")
    nl.add_argument("action", choices=("send",))
    nl.add_argument("--app", required=True, help="app sid")
    nl.add_argument("--name", required=True, help="the newsletter's name (its statistics: campaign newsletter:NAME)")
    nl.add_argument("--subject", required=True, help="the subject; {{property}} is filled in")
    nl.add_argument("--body", required=True, metavar="FILE", help="the letter's HTML; {{property}} is filled in")
    nl.add_argument("--segment", action="append", metavar="NAME", help="only the members of this segment (repeatable)")

    pe = command("people", cmd_people, help="delete a person, with all their ids and data")
    pe.add_argument("action", choices=("delete",))
    pe.add_argument("app", help="app sid")
    pe.add_argument("id", help="any of the person's ids")

    sv = command("serve", cmd_serve, help="serve the analytics JSON API and charts (reads ClickHouse)")
    sv.add_argument("--port", type=int, default=None, help="port (default: api.port in the config)")

    c = command("collector", cmd_collector, help="serve the HTTP tracking API (to tracktor.raw)")
    c.add_argument("--port", type=int, default=None, help="port (default: collector.port in the config)")
    c.add_argument("--workers", type=_at_least_one, default=None, help="processes serving the port (default: collector.workers)")

    w = command("warehouse", cmd_warehouse, help="the embedded warehouse's ClickHouse HTTP interface")
    w.add_argument("action", choices=("serve",), help="own the warehouse and serve it in the foreground")

    d = command("demo", cmd_demo, help="the whole pipeline over sample data")
    d.add_argument("--people", type=int, default=2000, help="visitors per app")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--serve", action="store_true", help="then serve the dashboard over the demo's data until Ctrl-C")
    d.add_argument("--port", type=int, help="the dashboard's port with --serve (default: api.port)")

    b = command("bench", cmd_bench, help="run the benchmarks (bench/) into one table")
    b.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    b.add_argument("--only", nargs="+", metavar="NAME", help="some of the benchmarks (bench/NAME.py)")
    return p


def main(argv=None) -> int:
    import faulthandler
    faulthandler.enable()  # a crash of this process prints its Python traceback (not the JVM's: see use_this_interpreter)
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (config_mod.ConfigError, ValueError, RuntimeError, OSError) as e:
        print(f"tracktor: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
