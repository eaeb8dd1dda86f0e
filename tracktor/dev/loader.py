"""Sending envelopes to tracktor.raw with the guarantees the collector gives (acks=all)."""
from __future__ import annotations

import json
from typing import Iterable

import orjson

from tracktor.dev.envelopes import kafka_key
from tracktor.progress import Progress


def producer(bootstrap_servers: str):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=20,
                         batch_size=256 * 1024, compression_type="lz4")


def send(bootstrap_servers: str, topic: str, envelopes: Iterable[dict], total: int | None = None,
         label: str = "sent") -> int:
    """Send every envelope, keyed by app, its receive time as the record's timestamp (the log
    time, as the collector writes it); returns how many. Raises if Kafka did not take them all."""
    prod = producer(bootstrap_servers)
    progress = Progress(label, total)
    futures = []
    try:
        for env in envelopes:
            value = json.dumps(env, separators=(",", ":")).encode()
            futures.append(prod.send(topic, key=kafka_key(env).encode(), value=value, timestamp_ms=env["received_at"]))
            progress.advance()
            if len(futures) >= 50_000:
                prod.flush()
                for f in futures:
                    f.get()
                futures.clear()
        prod.flush()
        for f in futures:
            f.get()
    finally:
        prod.close()
    progress.finish()
    return progress.done


def send_heartbeat(bootstrap_servers: str, topic: str, ms: int) -> None:
    """A clock heartbeat at `ms` into every partition of `topic`, as the collector writes them
    (loaded data has none of its own: this moves the jobs' clock past it)."""
    from confluent_kafka import Producer

    prod = Producer({"bootstrap.servers": bootstrap_servers, "acks": "all"})
    partitions = prod.list_topics(topic, timeout=30).topics[topic].partitions
    for p in partitions:
        prod.produce(topic, orjson.dumps({"heartbeat": ms}), f"#hb:{p}".encode(), partition=p, timestamp=ms)
    if prod.flush(30):
        raise RuntimeError(f"Kafka did not take the heartbeats for {topic}")


def post_batches(collector_url: str, envelopes: Iterable[dict], total: int | None = None,
                 batch_size: int = 500, label: str = "sent") -> int:
    """Send envelopes as /batch calls to a collector over HTTP (one keep-alive connection)."""
    import http.client
    from urllib.parse import urlsplit

    from tracktor.dev.envelopes import to_call

    url = urlsplit(collector_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    progress = Progress(label, total)

    def post(batch):
        conn.request("POST", "/batch", body=json.dumps(batch, separators=(",", ":")),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"the collector answered {response.status}: {body[:500]!r}")
        progress.advance(len(batch))

    batch = []
    try:
        for env in envelopes:
            batch.append(to_call(env))
            if len(batch) >= batch_size:
                post(batch)
                batch = []
        if batch:
            post(batch)
    finally:
        conn.close()
    progress.finish()
    return progress.done
