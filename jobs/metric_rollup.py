"""metric_rollup: tracktor.events, .derived, .identities, .profiles, .segments -> ClickHouse.

Rows are written in batches (every 10k rows or second, and at the end of a bounded run) by
one writer, since in embedded mode a single process owns the chDB warehouse. The tables
collapse replayed rows (ReplacingMergeTree), so a batch written twice after a restart
leaves no duplicate.

    python -m jobs.metric_rollup [--config tracktor.yaml] [--bounded]
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

from pyflink.common import Row, Types
from pyflink.datastream import ProcessFunction

from tracktor import config as config_mod
from tracktor.warehouse import shared as shared_chdb
from tracktor import warehouse
from tracktor.flink.environment import insert_into_kafka, kafka_rows, output_type, stream_env
from tracktor.cli import job_main
from udfs.envelope import BadRecord, dead_letter
from udfs.rollup import ROLES, Batcher, to_rows

JOB = "metric_rollup"


class WarehouseWriter(ProcessFunction):
    """Writes rows to ClickHouse in batches; yields only dead-letter rows for bad records.

    A batch is written when it is full or its oldest row waited `max_wait_s`, also when no
    more records come: a flusher thread checks twice per `max_wait_s`. A failed write fails
    the job at the next record (it restarts from its checkpoint and writes the rows again).
    """

    def __init__(self, clickhouse: dict, topics: dict, max_rows: int = 10_000, max_wait_s: float = 1.0):
        self.clickhouse = clickhouse
        self.topics = topics
        self.max_rows, self.max_wait_s = max_rows, max_wait_s
        self.client = None

    def open(self, ctx):
        self.batcher = Batcher(self.max_rows, self.max_wait_s)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.error: Exception | None = None
        self.client = warehouse.connect(self.clickhouse["dsn"])
        warehouse.migrate(self.client, self.clickhouse["database"])
        self.flusher = threading.Thread(target=self._flush_when_due, name="warehouse-flusher", daemon=True)
        self.flusher.start()

    def _flush_when_due(self):
        while not self.stop.wait(self.max_wait_s / 2):
            with self.lock:
                if self.batcher.due() and self.error is None:
                    try:
                        self.flush()
                    except Exception as e:  # raised in the job's thread by the next record
                        self.error = e

    def process_element(self, value, ctx):
        role, text = value[0], value[1]
        try:
            rows = to_rows(role, text)
        except BadRecord as e:
            yield Row(self.topics["dead_letter"], JOB, json.dumps(dead_letter(JOB, self.topics[role], str(e), text)))
            return
        with self.lock:
            if self.error is not None:
                raise RuntimeError(f"writing to ClickHouse failed: {self.error}") from self.error
            for table, row in rows:
                self.batcher.add(table, row)
            if self.batcher.due():
                self.flush()

    def flush(self):
        for table, rows in self.batcher.take().items():
            warehouse.insert_rows(self.client, self.clickhouse["database"], table, rows)

    def close(self):
        if self.client is not None:
            self.stop.set()
            self.flusher.join()
            try:
                if self.error is not None:  # rows taken for a write that failed: the job must not end as if done
                    raise RuntimeError(f"writing to ClickHouse failed: {self.error}") from self.error
                self.flush()
            finally:
                self.client.close()  # releases the chDB data path for the next owner
                self.client = None


def build(env, t_env, bootstrap_servers: str, topics: dict, clickhouse: dict, bounded: bool):
    streams = []
    for role in ROLES:
        ds = kafka_rows(t_env, f"{role}_in", bootstrap_servers, topics[role], f"tracktor-metric-rollup-{role}", bounded)
        streams.append(ds.map(lambda r, role=role: Row(role, r[1]),
                              output_type=Types.ROW([Types.STRING(), Types.STRING()])))
    rows = streams[0].union(*streams[1:])
    dead = (rows.process(WarehouseWriter(clickhouse, topics), output_type=output_type())
                .set_parallelism(1).uid("warehouse-writer").name("ClickHouse writer"))
    return insert_into_kafka(t_env, dead, "rollup_dead_letter", bootstrap_servers, [topics["dead_letter"]],
                             "tracktor-metric-rollup")


def run(cfg: config_mod.Config, bootstrap_servers: str, bounded: bool):
    # chDB must not load inside the JVM (thread mode embeds Python there, and the engine takes
    # the JVM down when it closes): the writer runs in a Python worker process of its own.
    env, t_env = stream_env({**cfg.flink, "execution_mode": "process"}, JOB, resume=not bounded)
    build(env, t_env, bootstrap_servers, cfg.topics, cfg.clickhouse, bounded).wait()
    wait_for_writer(cfg.clickhouse)


def wait_for_writer(clickhouse: dict) -> None:
    """After a bounded run: the Python worker may still be closing the writer (with its last
    batch) when the job reports finished; return once it has let go of the warehouse."""
    dsn = clickhouse["dsn"]
    if dsn.startswith("chdb:///"):
        shared_chdb.wait_released(Path(dsn[len("chdb://"):]))


def main(argv=None):
    job_main(__doc__, run, argv)


if __name__ == "__main__":
    main()
