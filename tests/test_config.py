"""tracktor.yaml validation: the shipped file loads, and a bad one names the key at fault."""
from __future__ import annotations

import copy
import os

import pytest
import yaml

from tracktor import config
from tracktor.config import ConfigError

SHIPPED = yaml.safe_load(config.DEFAULT_PATH.read_text())


def parse(tree, tmp_path):
    return config.parse(tree, tmp_path / "tracktor.yaml")


def test_the_shipped_config_loads_with_its_apps_funnels_and_metrics():
    cfg = config.load()
    video = cfg.app("demo-video")
    assert video.funnels["video_journey"].events[0] == "Site visit"
    assert video.cart_timeout == 30 * 60
    assert cfg.clickhouse.dsn.startswith("chdb:///") and cfg.clickhouse.dsn.endswith("/.data/warehouse")
    assert set(cfg.topics) == set(config.TOPIC_ROLES)
    shop = cfg.app("demo-shop")
    assert shop.funnels["big_ticket_checkout"].step_filters[1] == (config.Criterion(property="price", op="gte", value=50),)
    assert shop.metrics["spend_per_buyer"].params == {"property": "total_spent", "divide_by": "event_people",
                                                      "event": "purchaseCart"}
    assert video.auto_events.for_library() == {"pageViews": [], "clicks": []}


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t["apps"][1].update(cart_timeout="soon"), "apps[1].cart_timeout: expected a duration like 30m, got 'soon'"),
    (lambda t: t["kafka"]["topics"].update(raw=""), "kafka.topics.raw: expected a non-empty string, got ''"),
    (lambda t: t["kafka"]["topics"].update(raw="tracktor.events"), "kafka.topics: two roles share one topic name"),
    (lambda t: t["flink"].update(parallelism=0), "flink.parallelism: expected an integer >= 1, got 0"),
    (lambda t: t["flink"].update(execution_mode="fast"), "flink.execution_mode: expected one of thread, process, got 'fast'"),
    (lambda t: t["flink"].update(bundle_max_records=0), "flink.bundle_max_records: expected an integer >= 1, got 0"),
    (lambda t: t["flink"].update(bundle_max_delay_ms="100ms"), "flink.bundle_max_delay_ms: expected an integer, got '100ms'"),
    (lambda t: t["apps"][0].update(signed_only="yes"), "apps[0].signed_only: expected true or false, got 'yes'"),
    (lambda t: t["apps"][0]["funnels"]["video_journey"].update(steps=["only one"]), "apps[0].funnels.video_journey.steps: expected a list of 2 to 32"),
    (lambda t: t["apps"][0]["funnels"]["video_journey"].update(steps=[f"e{i}" for i in range(33)]), "expected a list of 2 to 32"),
    (lambda t: t["apps"][0]["metrics"]["site_visitors"].update(type="magic"), "apps[0].metrics.site_visitors.type: expected one of"),
    (lambda t: t["apps"][0]["metrics"]["site_visitors"].pop("event"), "apps[0].metrics.site_visitors: missing key 'event'"),
    (lambda t: t["apps"][0]["metrics"]["site_visitors"].update(repeatable=True), "apps[0].metrics.site_visitors: unknown key 'repeatable'"),
    (lambda t: t["apps"][0]["metrics"]["registration_to_premium"].update(repeatable="often"), "registration_to_premium.repeatable: expected true or false"),
    (lambda t: t["apps"][1].update(sid="demo-video"), "apps[1].sid: duplicate sid 'demo-video'"),
    (lambda t: t["apps"][0].update(sid="bad sid!"), "apps[0].sid: expected 1-64 letters"),
    (lambda t: t["clickhouse"].update(dsn="mysql://x"), "clickhouse.dsn: expected chdb:PATH, chdb:///ABSOLUTE/PATH or http(s)://host:port, got 'mysql://x'"),
    (lambda t: t["clickhouse"].update(dsn="chdb://srv/wh"), "clickhouse.dsn: 'chdb://srv/wh' is ambiguous: write "
                                                            "chdb:///ABSOLUTE/PATH, or chdb:RELATIVE/PATH"),
    (lambda t: t["clickhouse"].update(database="x; DROP"), "clickhouse.database: expected an identifier"),
    (lambda t: t.update(extra=1), "(top): unknown key 'extra'"),
    (lambda t: t["apps"][0].update(advanced_events=["teleport"]), "apps[0].advanced_events[0]: expected one of"),
    (lambda t: t["apps"][0].update(auto_events={"page_views": [{"event": "V", "url": "(unclosed"}]}),
     "apps[0].auto_events.page_views[0].url: not a regular expression"),
    (lambda t: t["apps"][0].update(auto_events={"clicks": [{"event": "C"}]}), "apps[0].auto_events.clicks[0]: missing key 'selector'"),
    (lambda t: t["apps"][1]["metrics"]["revenue_under_40"]["criteria"][0].update(op="like"),
     "apps[1].metrics.revenue_under_40.criteria[0].op: expected one of eq, ne"),
    (lambda t: t["apps"][1]["metrics"]["revenue_under_40"]["criteria"][0].update(value="forty"),
     "apps[1].metrics.revenue_under_40.criteria[0]: 'lt' compares numbers, got 'forty'"),
    (lambda t: t["apps"][1]["metrics"]["spend_per_buyer"].pop("event"), "apps[1].metrics.spend_per_buyer: divide_by: event_people needs an 'event'"),
    (lambda t: t["apps"][1]["metrics"]["spend_per_buyer"].update(divide_by="moon"), "spend_per_buyer.divide_by: expected one of people"),
    (lambda t: t["apps"][0]["metrics"]["site_visitors"].update(criteria=[]), "apps[0].metrics.site_visitors: unknown key 'criteria'"),
    (lambda t: t["apps"][1]["funnels"]["big_ticket_checkout"]["steps"][1].update(where="price > 50"),
     "big_ticket_checkout.steps[1].where: expected a list, got str"),
    (lambda t: t["apps"][1]["funnels"]["checkout"].update(people=[{"property": "plan", "op": "set", "value": 1}]),
     "apps[1].funnels.checkout.people[0]: 'set' takes no value"),
    (lambda t: t.update(api={"port": -1}), "api.port: expected an integer >= 0"),
    (lambda t: t["clickhouse"]["http"].update(host="0.0.0.0"), "clickhouse.http.host: the embedded warehouse serves "
                                                               "this machine only"),
    (lambda t: t["clickhouse"].update(users={"reader": {"password": ""}}), "clickhouse.users.reader.password"),
    (lambda t: t["flink"].update(jobs={"identity_merg": {"checkpoint_interval_ms": 500}}),
     "flink.jobs: no job 'identity_merg' (jobs: identity_merge,"),
    (lambda t: t["flink"].update(jobs={"segment_eval": {"checkpoint_interval_ms": 50}}),
     "flink.jobs.segment_eval.checkpoint_interval_ms: expected an integer >= 100, got 50"),
    (lambda t: t["flink"].update(jobs={"segment_eval": {"parallelism": 2}}), "flink.jobs.segment_eval: unknown key 'parallelism'"),
])
def test_a_bad_value_is_reported_with_its_key(tmp_path, mutate, message):
    tree = copy.deepcopy(SHIPPED)
    mutate(tree)
    with pytest.raises(ConfigError) as err:
        parse(tree, tmp_path)
    assert message in str(err.value)


def test_a_missing_file_and_broken_yaml_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        config.load(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("kafka: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(tmp_path / "bad.yaml")


def test_durations():
    assert config.parse_duration("90s") == 90
    assert config.parse_duration("2h") == 7200
    assert config.parse_duration(15) == 15
    with pytest.raises(ValueError):
        config.parse_duration("-3m")


def test_an_absolute_chdb_path_is_that_path_wherever_the_config_file_is(tmp_path):
    """chdb:///ABS is the path itself (clickhouse-connect's convention), not a folder under the
    config's: what one config writes there, another config elsewhere reads from the same path."""
    from tracktor import warehouse
    target = tmp_path / "srv" / "tracktor" / "warehouse"
    etc, elsewhere = tmp_path / "etc" / "tracktor", tmp_path / "home" / "me"
    for folder, dsn in ((etc, f"chdb://{target}"), (elsewhere, "chdb:../../srv/tracktor/warehouse")):
        folder.mkdir(parents=True)
        tree = copy.deepcopy(SHIPPED)
        tree["clickhouse"]["dsn"] = dsn
        (folder / "tracktor.yaml").write_text(yaml.safe_dump(tree))
    first = config.load(etc / "tracktor.yaml")
    assert first.clickhouse.chdb_path == target
    client = warehouse.connect(first.clickhouse)
    warehouse.migrate(client, first.clickhouse.database)
    client.command(f"INSERT INTO {first.clickhouse.database}.identities (app, distinct_id, person_id, ts) "
                   "VALUES ('a', 'x', 'p', now64(3))")
    client.close()
    assert target.is_dir() and not (etc / "srv").exists()
    second = config.load(elsewhere / "tracktor.yaml")
    assert second.clickhouse.chdb_path == target
    client = warehouse.connect(second.clickhouse)
    try:
        assert client.command(f"SELECT count() FROM {second.clickhouse.database}.identities") == 1
    finally:
        client.close()


def test_jvm_options_reach_the_jvm_a_job_starts_once_after_those_given(monkeypatch):
    from tracktor.flink.environment import use_this_interpreter

    shipped = config.load().flink.jvm_options
    assert shipped == config.settings.FlinkSettings().jvm_options == "-XX:TieredStopAtLevel=1"
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))  # restored after the test, as is the rest
    monkeypatch.delenv("PYTHONFAULTHANDLER", raising=False)
    monkeypatch.setenv("JAVA_TOOL_OPTIONS", "-Xss2m -XX:CICompilerCount=12")
    use_this_interpreter(shipped)
    use_this_interpreter(shipped)  # a second job in the same process
    use_this_interpreter("-XX:CICompilerCount=1 -Xss2m")  # an option is a whole word
    assert os.environ["JAVA_TOOL_OPTIONS"] == "-Xss2m -XX:CICompilerCount=12 -XX:TieredStopAtLevel=1 -XX:CICompilerCount=1"


def test_a_job_takes_its_own_flink_settings_over_the_sections(tmp_path):
    """flink.jobs.NAME overrides that job's settings only; a job's declared execution mode
    (metric_rollup's process mode: chDB must not load in the JVM) still applies."""
    import jobs
    tree = copy.deepcopy(SHIPPED)
    tree["flink"]["checkpoint_interval_ms"] = 3000
    tree["flink"]["jobs"] = {"identity_merge": {"checkpoint_interval_ms": 700}, "metric_rollup": {"checkpoint_interval_ms": 200}}
    cfg = parse(tree, tmp_path)
    taken = {name: jobs.load(name).flink_settings(cfg) for name in jobs.NAMES}
    assert taken["identity_merge"].checkpoint_interval_ms == 700
    assert (taken["metric_rollup"].checkpoint_interval_ms, taken["metric_rollup"].execution_mode) == (200, "process")
    assert {taken[n].checkpoint_interval_ms for n in ("cart_timeout", "segment_eval", "workflow_runner")} == {3000}
    assert config.load().flink.for_job("identity_merge").checkpoint_interval_ms == 500  # the shipped file's
