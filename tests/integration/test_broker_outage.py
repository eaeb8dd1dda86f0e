"""The Kafka broker killed (SIGKILL) and started again while the collector and the jobs run.

Calls arrive through the collector, as a client sends them: in /batch requests, each sent
again after a 503 until it is accepted. Mid-stream the broker dies for OUTAGE_S and comes
back on its ports and data. Meanwhile the collector answers 503 (never a dropped connection
or a 5xx of another kind), every call it acknowledged is in tracktor.raw, and every job of
the pipeline resumes. Their outputs are then compared with an uninterrupted run of the same
raw topic on another broker, as test_faults compares them: identity_merge's topics record by
record per key, the per-person jobs' as multisets, the warehouse's tables row by row, metric
and funnel answers.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest

from tests.conftest import make_config, post_batch as post, read_topic, run_jobs
from tests.integration.test_faults import Pipeline, assert_same, calls, contents
from tracktor.collector.server import Collector
from tracktor.dev import loader
from tracktor.dev.envelopes import to_call
from tracktor.dev.kafka_local import LocalKafka
from tracktor.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.faults]  # its own broker, killed: the second tier
OUTAGE_S = 8
FEED_S = 20


def batches(envs: list[dict], size: int = 20) -> list[tuple[str, list[dict]]]:
    """The calls as /batch requests of one app each, in the order they were made."""
    out: list[tuple[str, list[dict]]] = []
    for env in envs:
        if not out or out[-1][0] != env["app"] or len(out[-1][1]) == size:
            out.append((env["app"], []))
        out[-1][1].append(to_call(env))
    return out


def what(call: dict) -> str:
    """A call, by its fields (the envelope's event id and receive time are the collector's)."""
    return json.dumps({k: v for k, v in call.items() if k not in ("sid", "method")}, sort_keys=True)


@pytest.fixture(scope="module")
def outage(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outage")
    for part in ("live", "reference"):
        (tmp / part).mkdir()
    broker = LocalKafka(tmp / "broker").start()
    bs = broker.bootstrap_servers
    cfg = make_config(tmp / "live", "outage", bs, checkpoint_interval_ms=1000)
    ensure_topics(bs, cfg.kafka)
    collector = Collector(cfg, bs, port=0, kafka_timeout_s=2.0).start()
    pipeline = Pipeline(cfg)
    envs = calls()
    requests = batches(envs)
    answers: Counter = Counter()
    acknowledged: Counter = Counter()
    during: list[int] = []  # answers while the broker was down
    down = threading.Event()

    def client():
        for app, body in requests:
            while True:
                was_down = down.is_set()
                status = post(collector.address, app, body)
                answers[status] += 1
                if was_down and down.is_set():  # asked and answered while the broker was down
                    during.append(status)
                if status == 200:
                    acknowledged.update(what(c) for c in body)
                    break
                time.sleep(0.5)  # a client's retry after a 503
            time.sleep(FEED_S / len(requests))

    try:
        time.sleep(8)  # the jobs' start-up, so that the outage falls mid-stream
        sender = threading.Thread(target=client)
        sender.start()
        time.sleep(FEED_S / 3)
        broker.kill()
        down.set()
        time.sleep(OUTAGE_S)
        down.clear()
        broker.start()
        sender.join()
        raw = [env for _, env in read_topic(bs, cfg.topics["raw"])]
        clock = max(e["received_at"] for e in raw) + 3_600_000  # past every call, in both runs
        loader.send_heartbeat(bs, cfg.topics["raw"], clock)
        pipeline.settle(bs)
        got = contents(bs, cfg)
    finally:
        pipeline.stop()
        collector.stop()
        broker.stop()
    # the uninterrupted run: the same raw topic, on the session's broker, each job once
    ref = make_config(tmp / "reference", "outage-ref", kafka)
    ensure_topics(kafka, ref.kafka)
    loader.send(kafka, ref.topics["raw"], raw, label="calls")
    loader.send_heartbeat(kafka, ref.topics["raw"], clock)
    run_jobs(ref, kafka)
    return dict(got=got, expected=contents(kafka, ref), raw=raw, answers=answers, during=during,
                acknowledged=acknowledged, sent=sum(len(b) for _, b in requests))


def test_while_the_broker_is_down_the_collector_answers_503(outage):
    assert outage["during"] and set(outage["during"]) == {503}, Counter(outage["during"])
    assert set(outage["answers"]) == {200, 503}


def test_every_call_the_collector_acknowledged_is_in_the_raw_topic(outage):
    written = Counter(what(to_call(e)) for e in outage["raw"])
    assert sum(outage["acknowledged"].values()) == outage["sent"]  # the client got every call in
    missing = outage["acknowledged"] - written
    assert not missing, f"{sum(missing.values())} acknowledged calls are not in tracktor.raw, e.g. {list(missing)[:2]}"


def test_the_jobs_resume_with_the_outputs_of_the_uninterrupted_run(outage):
    assert_same(outage["got"], outage["expected"], ["broker outage"], list(outage["expected"]))
