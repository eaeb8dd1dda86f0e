"""The ClickHouse layer on real chDB, fed rows directly: migrations, re-attribution, funnels."""
from __future__ import annotations

import json
from datetime import date

import pytest

from tests.conftest import BEGINNING, ONE_MINUTE, OtherOwner
from tracktor.analytics import queries as analytics
from tracktor import warehouse
from tracktor.config import Criterion, Funnel, metric_from
from udfs.rollup import to_rows

DB = "tracktor"
APP = "app1"
DAY = date(2026, 1, 1)
ABCD = Funnel.of("abcd", ("A", "B", "C", "D"), None)


@pytest.fixture(params=["owner", "over_http"])
def client(tmp_path, request):
    """The warehouse as its owner sees it, and as a process sees it through the owner's HTTP
    interface: every answer must be the same."""
    dsn = f"chdb://{tmp_path / 'wh'}"
    other = OtherOwner(dsn) if request.param == "over_http" else None
    c = warehouse.connect(dsn)
    warehouse.migrate(c, DB)
    yield c
    c.close()
    if other:
        other.stop()


def write(client, role, records, db=DB):
    """Topic records into the warehouse the way metric_rollup writes them."""
    rows = {}
    for rec in records:
        for table, row in to_rows(role, json.dumps(rec)):
            rows.setdefault(table, []).append(row)
    for table, batch in rows.items():
        warehouse.insert_rows(client, db, table, batch)


def ev(distinct_id, event, minute, app=APP, eid=None):
    return {"event_id": eid or f"{distinct_id}-{event}-{minute}", "app": app, "kind": "track", "event": event,
            "distinct_id": distinct_id, "person_id": distinct_id, "ts": BEGINNING + minute * ONE_MINUTE,
            "received_at": BEGINNING + minute * ONE_MINUTE, "data": {}}


def ident(distinct_id, person, version, app=APP):
    return {"app": app, "distinct_id": distinct_id, "person_id": person, "version": version, "ts": BEGINNING, "event_id": "m"}


def reached(client, f=ABCD, app=APP):
    return [s.people for s in analytics.funnel(client, DB, app, f, DAY, DAY)]


def test_migrations_are_idempotent_and_recorded(client):
    assert warehouse.migrate(client, DB) == []
    names = [r[0] for r in client.query(f"SELECT name FROM {DB}.schema_migrations ORDER BY name").result_rows]
    assert names == [p.stem for p in warehouse.migration_files()]


# Migrations as released: a warehouse records a migration's name once it applied it, so an
# edited migration never reaches warehouses that already have it (0004 was once edited and
# 0006's views then failed on them). Change the schema with a new migration instead.
RELEASED = {
    "0001_events": "1bd5ebe00db849fa",
    "0002_identities": "855e0d93b286995f",
    "0003_persons": "7cae6a2378a59655",
    "0004_person_events": "d7255b87d4051e81",
    "0005_analytics_views": "b85b063e188db1dc",
    "0006_history_and_rollups": "c18d09ec1aee1132",
    "0007_property_metrics_and_filters": "8c13c9d4f6301919",
    "0008_same_moment_follows": "52570c2585b16287",
}


def test_released_migrations_are_never_edited():
    import hashlib
    current = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in warehouse.migration_files()}
    assert {k: current.get(k) for k in RELEASED} == RELEASED


def test_the_seeds_three_funnel_cases(client):
    write(client, "events", [ev("p1", s, i) for i, s in enumerate("ABCD")])            # converts
    write(client, "events", [ev("p2", s, i) for i, s in enumerate("ABCED")])           # loose order converts
    write(client, "events", [ev("p3", s, i) for i, s in enumerate("ABD")])             # stops after B
    steps = analytics.funnel(client, DB, APP, ABCD, DAY, DAY)
    assert [s.people for s in steps] == [3, 3, 2, 2]
    assert steps[1].from_previous == 1.0 and steps[2].from_first == pytest.approx(2 / 3)
    assert [p.person for p in analytics.funnel_people(client, DB, APP, ABCD, DAY, DAY, step=4)] == ["p1", "p2"]
    assert [p.person for p in analytics.funnel_people(client, DB, APP, ABCD, DAY, DAY, step=2, dropped=True)] == ["p3"]


def test_a_step_at_the_same_moment_as_the_previous_one_follows_it(client):
    # whole-second timestamps are common (the seed's ts): calls in one second still follow each other
    write(client, "events", [ev("p1", "A", 0), ev("p1", "B", 0), ev("p1", "C", 1),
                             ev("p2", "A", 0), ev("p2", "B", 1), ev("p2", "C", 1),
                             ev("p3", "B", 0), ev("p3", "A", 1)])                   # B before A still does not
    assert reached(client) == [3, 2, 2, 0]
    m = metric_of(client, "conversion_rate", last=DAY, event_a="A", event_b="B", repeatable=True)
    assert m.total == pytest.approx(2 / 3)  # p1's B at the moment of its A, p2's a minute later; not p3's
    t = metric_of(client, "avg_time_between", last=DAY, event_a="A", event_b="B")
    assert (t.people, t.total) == (2, pytest.approx(30.0))


def test_the_drill_down_gives_email_and_last_action(client):
    write(client, "events", [ev("a-1", "A", 0), ev("u1", "B", 1), ev("u1", "Logout", 9), ev("u2", "A", 3)])
    write(client, "identities", [ident("a-1", "u1", 1)])
    write(client, "profiles", [{"app": APP, "person_id": "u1", "properties": {"email": "u1@example.com"},
                                "version": 1, "ts": BEGINNING, "merged_into": None}])
    people = analytics.funnel_people(client, DB, APP, ABCD, DAY, DAY, step=1, limit=10)
    assert [(p.person, p.email, p.last_action) for p in people] == [("u1", "u1@example.com", "Logout"), ("u2", "", "A")]
    assert len(analytics.funnel_people(client, DB, APP, ABCD, DAY, DAY, step=1, limit=1)) == 1
    with pytest.raises(ValueError, match="step must be 1..4"):
        analytics.funnel_people(client, DB, APP, ABCD, DAY, DAY, step=5)


def test_events_before_a_merge_count_for_the_merged_person(client):
    write(client, "events", [ev("a-1", "A", 0), ev("a-1", "B", 1), ev("u1", "C", 2), ev("u1", "D", 3)])
    assert reached(client) == [1, 1, 0, 0]
    write(client, "identities", [ident("a-1", "u1", 1)])
    assert reached(client) == [1, 1, 1, 1]


def test_the_latest_identity_version_wins(client):
    write(client, "events", [ev("x", "A", 0), ev("y", "B", 1)])
    write(client, "identities", [ident("x", "y", 2), ident("x", "z", 1)])
    assert reached(client) == [1, 1, 0, 0]


def test_a_replayed_batch_leaves_no_duplicate(client):
    batch = [ev("p1", "A", 0), ev("p1", "A", 5)]
    write(client, "events", batch)
    write(client, "events", batch)
    times = metric_from("times", {"type": "times_event_happened", "event": "A"})
    assert analytics.metric(client, DB, APP, times, DAY, DAY).days == [(DAY, 2)]


def test_one_apps_data_is_invisible_to_another(client):
    write(client, "events", [ev("p1", "A", 0), ev("p1", "B", 1, app="app2", eid="other")])
    write(client, "identities", [ident("p1", "someone", 1, app="app2")])
    assert reached(client) == [1, 0, 0, 0]
    assert reached(client, app="app2") == [0, 0, 0, 0]


def test_a_conversion_window_cuts_slow_people(client):
    write(client, "events", [ev("fast", "A", 0), ev("fast", "B", 5), ev("slow", "A", 0), ev("slow", "B", 50)])
    assert reached(client, Funnel.of("w", ("A", "B"), 10 * 60)) == [2, 1]


def test_metric_series_include_days_without_events(client):
    write(client, "events", [ev("p1", "A", 0), ev("p2", "A", 1), ev("p1", "A", 2 * 24 * 60)])
    m = analytics.metric(client, DB, APP, metric_from("people", {"type": "people_did_event", "event": "A"}), DAY, date(2026, 1, 3))
    assert [v for _, v in m.days] == [2, 0, 1]
    assert (m.daily_max, m.daily_min, m.people) == (2, 0, 2)
    assert m.daily_avg == pytest.approx(1.0)


def test_funnel_step_names_are_parameters_not_sql(client):
    hostile = "A') OR 1=1 --"
    write(client, "events", [ev("p1", hostile, 0), ev("p1", "B", 1), ev("p2", "A", 0)])
    assert reached(client, Funnel.of("h", (hostile, "B"), None)) == [1, 1]


A_THEN_B = [ev("p1", "A", 0), ev("p1", "B", 5), ev("p1", "A", 10), ev("p1", "B", 20),   # A twice, B twice
            ev("p2", "A", 0),                                                          # never converts
            ev("p3", "B", 0), ev("p3", "A", 3),                                        # B before A only
            ev("a-4", "A", 24 * 60), ev("u4", "B", 24 * 60 + 30)]                       # merged, next day


def metric_of(client, mtype, last=date(2026, 1, 3), **params):
    return analytics.metric(client, DB, APP, metric_from("m", {"type": mtype, **params}), DAY, last)


def test_conversion_rate_non_repeatable_counts_people_by_the_day_of_their_first_a(client):
    write(client, "events", A_THEN_B)
    write(client, "identities", [ident("a-4", "u4", 1)])
    m = metric_of(client, "conversion_rate", event_a="A", event_b="B")
    assert m.days == [(DAY, 1 / 3), (date(2026, 1, 2), 1.0), (date(2026, 1, 3), None)]  # p1 of p1,p2,p3; u4 of u4
    assert (m.daily_min, m.daily_max) == (1 / 3, 1.0)  # the day without an A has no rate
    assert m.total == pytest.approx(2 / 4) and m.people == 4


def test_conversion_rate_repeatable_counts_b_events_after_an_a(client):
    write(client, "events", A_THEN_B)
    write(client, "identities", [ident("a-4", "u4", 1)])
    m = metric_of(client, "conversion_rate", event_a="A", event_b="B", repeatable=True)
    assert m.total == pytest.approx(3 / 5)  # p1's two Bs and u4's B; p3's B came before its A
    assert m.days[0] == (DAY, 2 / 4)


def test_average_time_between_uses_the_first_a_and_the_first_b_after_it(client):
    write(client, "events", A_THEN_B)
    write(client, "identities", [ident("a-4", "u4", 1)])
    m = metric_of(client, "avg_time_between", event_a="A", event_b="B")
    assert m.people == 2 and m.total == pytest.approx((300 + 1800) / 2)
    assert m.days[:2] == [(DAY, 300.0), (date(2026, 1, 2), 1800.0)]


def test_average_times_per_person(client):
    write(client, "events", [ev("p1", "A", 0), ev("p1", "A", 1), ev("p1", "A", 2), ev("p2", "A", 3)])
    m = metric_of(client, "avg_times_per_person", last=DAY, event="A")
    assert m.days == [(DAY, 2.0)] and m.total == 2.0 and m.people == 2


def test_every_configured_metric_type_has_an_answer():
    from tracktor.config import METRIC_TYPES
    assert set(METRIC_TYPES) == set(analytics._METRICS)


def test_a_funnel_of_32_steps_the_most_windowfunnel_takes(client):
    names = [f"s{i}" for i in range(32)]
    write(client, "events", [ev("p1", n, i) for i, n in enumerate(names)] + [ev("p2", n, i) for i, n in enumerate(names[:7])])
    assert reached(client, Funnel.of("long", tuple(names), None)) == [2] * 7 + [1] * 25


def props(distinct_id, minute, values, eid=None):
    """A setProperties call as identity_merge puts it on tracktor.events."""
    return {"event_id": eid or f"set-{distinct_id}-{minute}", "app": APP, "kind": "set", "event": "$set",
            "distinct_id": distinct_id, "person_id": distinct_id, "ts": BEGINNING + minute * ONE_MINUTE,
            "received_at": BEGINNING + minute * ONE_MINUTE, "data": values}


D2, D3 = date(2026, 1, 2), date(2026, 1, 3)
DAYS = 24 * 60
PROFILES = [
    props("p1", 0, {"spent": 10, "plan": "gold"}),
    props("p1", DAYS + 5, {"spent": 30}),                      # day 2: p1 now 30
    props("p2", 1, {"spent": 5, "plan": "free"}),
    props("p2", DAYS * 2 + 1, {"spent": None}),                # day 3: deleted
    props("p3", 2, {"spent": "lots", "plan": "gold"}),          # not a number: not counted
    props("a-4", 3, {"spent": 100, "plan": "gold"}),            # merged into u4 below
    props("u4", 4, {"spent": 1}),                              # later than a-4's: wins after the merge
]


def test_property_total_follows_each_days_latest_values_over_merged_persons(client):
    write(client, "events", PROFILES)
    write(client, "identities", [ident("a-4", "u4", 1)])
    m = metric_of(client, "total_property_value", property="spent")
    assert m.days == [(DAY, 10 + 5 + 1), (D2, 30 + 5 + 1), (D3, 30 + 1)]
    assert (m.total, m.people, m.daily_max, m.daily_min) == (31, 2, 36, 16)


def test_property_total_counts_only_people_meeting_the_criteria(client):
    write(client, "events", PROFILES)
    write(client, "identities", [ident("a-4", "u4", 1)])
    gold = (Criterion(property="plan", op="eq", value="gold"),)
    assert [v for _, v in metric_of(client, "total_property_value", property="spent", criteria=gold).days] == [11, 31, 31]
    rich = (Criterion(property="spent", op="gte", value=10), Criterion(property="plan", op="ne", value="free"))
    assert [v for _, v in metric_of(client, "total_property_value", property="spent", criteria=rich).days] == [10, 30, 30]
    no_plan = (Criterion(property="plan", op="not_set"),)
    assert [v for _, v in metric_of(client, "total_property_value", property="spent", criteria=no_plan).days] == [0, 0, 0]


def test_property_average_by_people_event_people_and_times_set(client):
    write(client, "events", PROFILES + [ev("p1", "Buy", 0), ev("u4", "Buy", DAYS), ev("p9", "Visit", 0)])
    write(client, "identities", [ident("a-4", "u4", 1)])

    def avg(**kw):
        return [v for _, v in metric_of(client, "average_property_value", property="spent", **kw).days]
    # people seen by each day's end: p1, p2, p3, u4 (a-4 merged), p9
    assert avg(divide_by="people") == [16 / 5, 36 / 5, 31 / 5]
    assert avg(divide_by="event_people", event="Buy") == [16 / 1, 36 / 2, 31 / 2]
    # numeric or not, every set of a value counts; the deletion does not
    assert avg(divide_by="sets") == [16 / 5, 36 / 6, 31 / 6]


def test_funnel_filters_on_step_data_and_person_properties(client):
    def data_ev(did, name, minute, **data):
        return {**ev(did, name, minute), "data": data}
    write(client, "events", [data_ev("p1", "A", 0, page="/"), data_ev("p1", "B", 1, price=20),
                             data_ev("p2", "A", 0, page="/"), data_ev("p2", "B", 1, price=5),
                             data_ev("p3", "A", 0, page="/blog"), data_ev("p3", "B", 1, price=50)])
    write(client, "profiles", [{"app": APP, "person_id": "p2", "properties": {"plan": "gold"}, "version": 1,
                                "ts": BEGINNING, "merged_into": None}])
    home = (Criterion(property="page", op="eq", value="/"),)
    assert reached(client, Funnel.of("f", ("A", "B"), step_filters=(home, ()))) == [2, 2]
    assert reached(client, Funnel.of("f", ("A", "B"), step_filters=(home, (Criterion(property="price", op="gt", value=10),)))) == [2, 1]
    assert reached(client, Funnel.of("f", ("A", "B"), people=(Criterion(property="plan", op="eq", value="gold"),))) == [1, 1]
    assert reached(client, Funnel.of("f", ("A", "B"), people=(Criterion(property="plan", op="not_set"),))) == [2, 2]
    f = Funnel.of("f", ("A", "B"), step_filters=((), (Criterion(property="price", op="lt", value=30),)))
    assert [p.person for p in analytics.funnel_people(client, DB, APP, f, DAY, DAY, step=1, dropped=True)] == ["p3"]


def test_segment_membership_is_the_latest_change(client):
    def change(person, what, version):
        return {"app": APP, "segment": "vip", "person_id": person, "change": what, "ts": BEGINNING + version, "version": version}
    write(client, "segments", [change("p1", "entered", 1), change("p2", "entered", 2), change("p1", "exited", 3),
                               change("p3", "entered", 4)])
    rows = client.query(f"SELECT person_id FROM {DB}.segment_members(app = {{app:String}}, segment = 'vip') ORDER BY person_id",
                        parameters={"app": APP}).result_rows
    assert [r[0] for r in rows] == ["p2", "p3"]


def test_the_daily_rollup_survives_replays_and_matches_the_raw_events(client):
    batch = [ev("p1", "A", 0), ev("p1", "A", 5), ev("p2", "A", DAYS), ev("a-3", "A", DAYS + 1)]
    write(client, "events", batch)
    write(client, "events", batch[1:])  # replayed, in another batch shape
    write(client, "identities", [ident("a-3", "p2", 1)])
    rolled = client.query(
        f"SELECT day, people, times FROM {DB}.metric_event_daily(app = {{app:String}}, event = 'A',"
        f" from_ts = '2026-01-01 00:00:00', to_ts = '2026-01-03 00:00:00') ORDER BY day", parameters={"app": APP}).result_rows
    raw = client.query(
        f"SELECT toDate(ts) AS day, uniqExact(person), count() FROM {DB}.person_events(app = {{app:String}},"
        f" from_ts = '2026-01-01 00:00:00', to_ts = '2026-01-03 00:00:00') WHERE event = 'A' GROUP BY day ORDER BY day",
        parameters={"app": APP}).result_rows
    assert rolled == raw == [(DAY, 1, 2), (D2, 1, 2)]


def test_the_bi_view_of_daily_property_values(client):
    write(client, "events", PROFILES)
    write(client, "identities", [ident("a-4", "u4", 1)])
    rows = client.query(
        f"SELECT day, person, value FROM {DB}.person_properties_daily(app = {{app:String}}, from_ts = '2026-01-01 00:00:00',"
        f" to_ts = '2026-01-04 00:00:00', property = 'spent', crit_keys = []) WHERE person IN ('p1', 'p2', 'u4')"
        f" ORDER BY person, day", parameters={"app": APP}).result_rows
    assert [(d.day, p, v) for d, p, v in rows] == [
        (1, "p1", "10"), (2, "p1", "30"), (3, "p1", "30"),
        (1, "p2", "5"), (2, "p2", "5"), (3, "p2", "null"),   # deleted on day 3
        (1, "u4", "1"), (2, "u4", "1"), (3, "u4", "1")]      # u4's own set is later than a-4's
