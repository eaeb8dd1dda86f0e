"""metric_rollup: tracktor.events, .derived, .identities, .profiles, .segments -> ClickHouse.

Exactly once in effect: records reach the writer in bundles, every input's records together
(each tagged with its input's role), so each bundle is one Python call and one insert per
table, at most `clickhouse.insert_max_delay_ms` after its first record (the JVM bundler sends
every bundle on before a checkpoint barrier, and PyFlink's Python operator finishes its
input before the barrier passes), and the writer inserts each bundle before it returns. So
every row read before a checkpoint is in ClickHouse when the checkpoint completes, and a
failed insert fails the job, which restarts from its last checkpoint and writes those rows
again; the tables collapse rows written twice (ReplacingMergeTree). One writer, since in
embedded mode a single process owns the chDB warehouse.

    python -m jobs.metric_rollup [--config tracktor.yaml] [--bounded]
"""
from __future__ import annotations

import orjson
from pyflink.datastream import KeyedProcessFunction

from tracktor import warehouse
from tracktor.flink.bundling import bundle_output_type, bundle_row, bundled, collector_paused, unbundled
from tracktor.flink.environment import jvm
from tracktor.flink.runner import Job, main
from udfs.envelope import dead_letter, failure_reason
from udfs.outputs import Outputs
from udfs.rollup import ROLES, Deletions, to_rows

NAME = "metric_rollup"
MAX_BUNDLE_ROWS = 20_000  # records per insert: large inserts are what ClickHouse writes fastest


class WarehouseWriter(KeyedProcessFunction):
    """Inserts each bundle of records (each with the role of the input it came from), one
    insert per table; yields only dead-letter records for records it cannot use."""

    def __init__(self, clickhouse, topics: dict):
        self.clickhouse = clickhouse
        self.topics = topics
        self.client = None
        self.deletions = Deletions()

    def open(self, ctx):
        self.client = warehouse.connect(self.clickhouse)
        warehouse.migrate(self.client, self.clickhouse.database)
        self.deletions = Deletions(warehouse.deleted_ids(self.client, self.clickhouse.database))

    def process_element(self, bundle, ctx):
        with collector_paused():
            tables, deleted, dead = self._rows(bundle)
        db = self.clickhouse.database
        for app, ids in sorted(deleted.items()):  # a deleted person's rows written before now
            warehouse.forget(self.client, db, app, sorted(ids))
        for table, table_rows in tables.items():  # a failure here fails the job: no row is dropped
            warehouse.insert_rows(self.client, db, table, table_rows)
        if dead:
            yield bundle_row(dead)

    def _rows(self, bundle):
        """The rows of the bundle's records to write, by table (not those of deleted people);
        the ids each deletion notice deleted, by app; dead letters of the records it cannot use."""
        rows: list[tuple[str, list, int]] = []
        deleted: dict[str, set] = {}  # app -> ids deleted in this bundle
        dead = Outputs()
        for text, ts, role in zip(bundle.values, bundle.stamps, bundle.roles):
            try:
                for table, row in to_rows(role, text):
                    rows.append((table, row, ts))
                    if table == "deleted_ids":
                        self.deletions.add(row)
                        deleted.setdefault(row[0], set()).update(orjson.loads(text)["data"]["ids"])
            except Exception as e:  # noqa: BLE001 - one record must never stop the job
                record = dead_letter(NAME, self.topics[role], failure_reason(e), text, ts)
                dead.add(self.topics["dead_letter"], NAME, orjson.dumps(record).decode(), ts)
        tables: dict[str, list] = {}
        for table, row, ts in rows:  # after the whole bundle's deletions are known
            if self.deletions.keeps(table, row, ts):
                tables.setdefault(table, []).append(row)
        return tables, deleted, dead

    def close(self):
        if self.client is not None:
            self.client.close()  # releases the chDB data path for the next owner
            self.client = None


def bundles(inputs: dict, cfg):
    """Every input's records in the same bundles (one key, each record tagged with its role):
    an insert's cost is mostly fixed (a new part per table, ~5-15 ms in chDB whatever its
    size), so a table's rows from every input (events and derived) are one insert."""
    from pyflink.datastream.data_stream import DataStream

    keyed = [DataStream(inputs[role]._j_data_stream.map(jvm().io.tracktor.flink.WithKey(NAME),
                                                          inputs[role]._j_data_stream.getType()))
             for role in ROLES]
    return bundled(*keyed, max_records=MAX_BUNDLE_ROWS, max_delay_ms=cfg.clickhouse.insert_max_delay_ms,
                   roles=list(ROLES), together=True)


def build(inputs: dict, cfg):
    written = (bundles(inputs, cfg).process(WarehouseWriter(cfg.clickhouse, cfg.topics),
                                            output_type=bundle_output_type())
               .set_parallelism(1).uid(JOB.uid("writer")).name("ClickHouse writer"))
    return unbundled(written)


def wait_for_writer(cfg) -> None:
    """After a bounded run: the Python worker may still be closing the writer when the job
    reports finished; return once it has let go of the warehouse."""
    if cfg.clickhouse.chdb_path is not None:
        warehouse.wait_released(cfg.clickhouse.chdb_path)


# chDB must not load inside the JVM (thread mode embeds Python there, and the engine takes
# the JVM down when it closes): the writer runs in a Python worker process of its own.
JOB = Job(NAME, inputs=ROLES, outputs=("dead_letter",), build=build, execution_mode="process",
          after_bounded_run=wait_for_writer, summary="resolved events, identities, profiles, segments -> ClickHouse")

if __name__ == "__main__":
    main(JOB)
