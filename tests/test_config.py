"""tracktor.yaml validation: the shipped file loads, and a bad one names the key at fault."""
from __future__ import annotations

import copy

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
    assert video.funnels["video_journey"].steps[0] == "Site visit"
    assert video.cart_timeout_seconds == 30 * 60
    assert cfg.clickhouse["dsn"].startswith("chdb:///") and cfg.clickhouse["dsn"].endswith("/.data/warehouse")
    assert set(cfg.topics) == set(config.TOPIC_ROLES)
    shop = cfg.app("demo-shop")
    assert shop.funnels["big_ticket_checkout"].step_filters[1] == (config.Criterion("price", "gte", 50),)
    assert shop.metrics["spend_per_buyer"].params == {"property": "total_spent", "divide_by": "event_people",
                                                      "event": "purchaseCart"}
    assert video.auto_events == {"pageViews": [], "clicks": []}


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t["apps"][1].update(cart_timeout="soon"), "apps[1].cart_timeout: expected a duration like 30m, got 'soon'"),
    (lambda t: t["kafka"]["topics"].pop("raw"), "kafka.topics: missing key 'raw'"),
    (lambda t: t["flink"].update(parallelism=0), "flink.parallelism: expected an integer >= 1, got 0"),
    (lambda t: t["flink"].update(execution_mode="fast"), "flink.execution_mode: expected one of thread, process"),
    (lambda t: t["flink"].update(bundle_max_records=0), "flink.bundle_max_records: expected an integer >= 1, got 0"),
    (lambda t: t["flink"].update(bundle_max_delay_ms="100ms"), "flink.bundle_max_delay_ms: expected an integer >= 1"),
    (lambda t: t["apps"][0].update(signed_only="yes"), "apps[0].signed_only: expected true or false"),
    (lambda t: t["apps"][0]["funnels"]["video_journey"].update(steps=["only one"]), "apps[0].funnels.video_journey.steps: expected a list of 2 to 32"),
    (lambda t: t["apps"][0]["funnels"]["video_journey"].update(steps=[f"e{i}" for i in range(33)]), "expected a list of 2 to 32"),
    (lambda t: t["apps"][0]["metrics"]["site_visitors"].update(type="magic"), "apps[0].metrics.site_visitors.type: expected one of"),
    (lambda t: t["apps"][0]["metrics"]["site_visitors"].pop("event"), "apps[0].metrics.site_visitors: a people_did_event metric needs 'event'"),
    (lambda t: t["apps"][0]["metrics"]["site_visitors"].update(repeatable=True), "site_visitors.repeatable: only a conversion_rate metric"),
    (lambda t: t["apps"][0]["metrics"]["registration_to_premium"].update(repeatable="often"), "registration_to_premium.repeatable: expected true or false"),
    (lambda t: t["apps"][1].update(sid="demo-video"), "apps[1].sid: duplicate sid 'demo-video'"),
    (lambda t: t["apps"][0].update(sid="bad sid!"), "apps[0].sid: expected 1-64 letters"),
    (lambda t: t["clickhouse"].update(dsn="mysql://x"), "clickhouse.dsn: expected chdb:///path or http(s)://host:port"),
    (lambda t: t["clickhouse"].update(database="x; DROP"), "clickhouse.database: expected an identifier"),
    (lambda t: t.update(extra=1), "(top): unknown key(s) extra"),
    (lambda t: t["apps"][0].update(advanced_events=["teleport"]), "apps[0].advanced_events[0]: expected one of"),
    (lambda t: t["apps"][0].update(auto_events={"page_views": [{"event": "V", "url": "(unclosed"}]}),
     "apps[0].auto_events.page_views[0].url: not a regular expression"),
    (lambda t: t["apps"][0].update(auto_events={"clicks": [{"event": "C"}]}), "apps[0].auto_events.clicks[0]: missing key 'selector'"),
    (lambda t: t["apps"][1]["metrics"]["revenue_under_40"]["criteria"][0].update(op="like"),
     "apps[1].metrics.revenue_under_40.criteria[0].op: expected one of eq, ne"),
    (lambda t: t["apps"][1]["metrics"]["revenue_under_40"]["criteria"][0].update(value="forty"),
     "criteria[0].value: 'lt' compares numbers, got 'forty'"),
    (lambda t: t["apps"][1]["metrics"]["spend_per_buyer"].pop("event"), "spend_per_buyer.event: expected a non-empty string"),
    (lambda t: t["apps"][1]["metrics"]["spend_per_buyer"].update(divide_by="moon"), "spend_per_buyer.divide_by: expected one of people"),
    (lambda t: t["apps"][0]["metrics"]["site_visitors"].update(criteria=[]), "site_visitors.criteria: only a total_property_value"),
    (lambda t: t["apps"][1]["funnels"]["big_ticket_checkout"]["steps"][1].update(where="price > 50"),
     "big_ticket_checkout.steps[1].where: expected a list of {property, op, value}"),
    (lambda t: t["apps"][1]["funnels"]["checkout"].update(people=[{"property": "plan", "op": "set", "value": 1}]),
     "checkout.people[0].value: 'set' takes no value"),
    (lambda t: t.update(api={"port": -1}), "api.port: expected an integer >= 0"),
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
    assert config.parse_duration("90s", "x") == 90
    assert config.parse_duration("2h", "x") == 7200
    assert config.parse_duration(15, "x") == 15
    with pytest.raises(ConfigError):
        config.parse_duration("-3m", "x")
