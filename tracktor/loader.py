"""Sending envelopes to tracktor.raw with the guarantees the collector gives (acks=all)."""
from __future__ import annotations

import json
from typing import Iterable

from tracktor.envelopes import kafka_key
from tracktor.progress import Progress


def producer(bootstrap_servers: str):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=20,
                         batch_size=256 * 1024, compression_type="lz4")


def send(bootstrap_servers: str, topic: str, envelopes: Iterable[dict], total: int | None = None,
         label: str = "sent") -> int:
    """Send every envelope, keyed app:id; returns how many. Raises if Kafka did not take them all."""
    prod = producer(bootstrap_servers)
    progress = Progress(label, total)
    futures = []
    try:
        for env in envelopes:
            value = json.dumps(env, separators=(",", ":")).encode()
            futures.append(prod.send(topic, key=kafka_key(env).encode(), value=value))
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
