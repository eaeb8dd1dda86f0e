"""identity_merge at parallelism 1 and 2 over the same tracktor.raw: identical topic contents
and identical ClickHouse answers (the raw topic is keyed by app; docs/identity.md). The
second run also hands Python much smaller bundles (7 calls, not 500): how the calls are
bundled must not change the outputs either."""
from __future__ import annotations

from collections import defaultdict
from datetime import date

import pytest

from tests import reference
from tests.conftest import HEARTBEAT, run_jobs, BEGINNING, ONE_DAY, make_config, read_partitions, read_topic
from tests.integration.test_pipeline import scenario
from tracktor.analytics import queries as analytics
from tracktor.topics import ensure_topics
from tracktor.dev import loader
from tracktor import warehouse
from tracktor.config import Funnel
from tracktor.dev.sample_data import Generator

pytestmark = pytest.mark.integration

ROLES = ("events", "identities", "profiles", "dead_letter")


def outputs_of(kafka, cfg):
    return {role: read_topic(kafka, cfg.topics[role]) for role in ROLES}


@pytest.fixture(scope="module")
def runs(kafka, tmp_path_factory):
    base = make_config(tmp_path_factory.mktemp("p1"), "par")
    base = base.updated(kafka={"partitions": 4})
    ensure_topics(kafka, base.kafka, partitions=4)
    envs = list(Generator(seed=9, people=120, start_ms=BEGINNING, days=2)) + scenario()
    loader.send(kafka, base.topics["raw"], envs)
    results = {}
    for parallelism in (1, 2):
        tmp = tmp_path_factory.mktemp(f"p{parallelism}")
        cfg = make_config(tmp, f"par{parallelism}", parallelism=parallelism,
                          bundle_max_records=500 if parallelism == 1 else 7)
        cfg = cfg.updated(kafka={"topics": {"raw": base.topics["raw"]}})
        ensure_topics(kafka, cfg.kafka, partitions=4)
        run_jobs(cfg, kafka, "identity_merge", "metric_rollup")  # the per-person jobs have their own tests
        results[parallelism] = (cfg, outputs_of(kafka, cfg))
    return envs, results


def per_key(records):
    """Values per key in topic order; a dead letter's failed_at is wall-clock time, left out."""
    seqs = defaultdict(list)
    for key, value in records:
        seqs[key].append({k: v for k, v in value.items() if k != "failed_at"})
    return dict(seqs)


def test_each_output_topic_has_the_same_records_per_key_in_the_same_order(runs):
    _, results = runs
    (_, one), (_, two) = results[1], results[2]
    for role in ROLES:
        assert one[role] or role == "dead_letter", role
        assert per_key(one[role]) == per_key(two[role]), role


def test_no_event_comes_after_a_heartbeat_later_than_it(kafka, runs):
    """The jobs after identity_merge take their clock from its heartbeats alone: at
    parallelism 2 each partition's heartbeats are written by the subtask that writes every
    record of the partition, so none comes after a heartbeat that said its time had passed —
    unless its call came late into tracktor.raw already (the scenario's, loaded after two days
    of calls into the same partition), which its clock had passed too."""
    _, results = runs
    cfg, _ = results[2]
    late = set()
    for messages in read_partitions(kafka, cfg.topics["raw"]).values():
        newest = 0
        for m in messages:
            if m.timestamp <= newest - cfg.flink.allowed_disorder * 1000:  # at or behind raw's clock
                late.add(m.timestamp)
            newest = max(newest, m.timestamp)
    heartbeats = 0
    for partition, messages in read_partitions(kafka, cfg.topics["events"]).items():
        clock = None
        for m in messages:
            if m.key.startswith(HEARTBEAT):
                clock, heartbeats = m.timestamp, heartbeats + 1
            elif clock is not None and m.timestamp <= clock:
                assert m.timestamp in late, (partition, m.offset, m.timestamp, clock)
    assert heartbeats


def test_clickhouse_gives_the_same_answers_and_the_reference_ones(runs):
    envs, results = runs
    steps = ("Site visit", "Free movie view", "Registration", "Upgrade to Premium")
    expected = reference.funnel(envs, "demo-video", list(steps), BEGINNING, BEGINNING + 3 * ONE_DAY, 3 * ONE_DAY)
    answers = []
    for cfg, _ in results.values():
        client = warehouse.connect(cfg.clickhouse)
        try:
            f = analytics.funnel(client, cfg.clickhouse.database, "demo-video", Funnel.of("f", steps, None),
                                 date(2026, 1, 1), date(2026, 1, 3))
            persons = client.query(f"SELECT app, person_id, properties FROM {cfg.clickhouse.database}.persons FINAL "
                                   "ORDER BY app, person_id").result_rows
            everyone = analytics.funnel_people(client, cfg.clickhouse.database, "demo-video", Funnel.of("f", steps, None),
                                               date(2026, 1, 1), date(2026, 1, 3), step=1, limit=100_000)
        finally:
            client.close()
        answers.append(([s.people for s in f], everyone, persons))
    assert answers[0] == answers[1]
    assert answers[0][0] == expected
