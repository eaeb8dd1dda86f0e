"""What is declared in more than one place stays in step: the migrated warehouse and its
reviewed snapshot (sql/schema.sql), the tables and what the writer inserts (udfs/rollup.py),
the columns and the topic schemas, materialized views and their target tables."""
from __future__ import annotations

import clickhouse_connect
import pytest

from tests.test_schemas import SCHEMAS
from tracktor import config, warehouse
from tracktor.warehouse.snapshot import SNAPSHOT, fresh_schema
from udfs.rollup import ROLE_TABLE, TABLES

DB = "drift"


@pytest.fixture(scope="module")
def client():
    c = clickhouse_connect.get_client(dsn="chdb://memory")
    c.command(f"DROP DATABASE IF EXISTS {DB}")
    warehouse.migrate(c, DB)
    yield c
    c.command(f"DROP DATABASE IF EXISTS {DB}")
    c.close()


def columns(client, table: str) -> list[tuple[str, str]]:
    return [tuple(r) for r in client.query("SELECT name, type FROM system.columns WHERE database = {db:String} "
                                           "AND table = {t:String} ORDER BY position",
                                           parameters={"db": DB, "t": table}).result_rows]


def test_the_snapshot_is_what_the_migrations_make():
    assert fresh_schema() == SNAPSHOT.read_text(), \
        "sql/schema.sql is out of date: review the change and run `.venv/bin/python -m tracktor.warehouse.snapshot`"


def test_every_table_the_writer_fills_has_exactly_the_columns_it_inserts(client):
    for table, cols in TABLES.items():
        assert [name for name, _ in columns(client, table)] == list(cols), table


def test_every_column_comes_from_a_field_its_topics_schema_carries():
    topics = config.load().topics
    derived_from_data = {"property_sets": {"key", "value"}}  # a set event's data, one row per key
    for role, table in ROLE_TABLE.items():
        fields = set(SCHEMAS[topics[role]]["properties"])
        missing = set(TABLES[table]) - fields - derived_from_data.get(table, set())
        assert not missing, (role, table, missing)
    events = set(SCHEMAS[topics["events"]]["properties"])
    assert set(TABLES["property_sets"]) - {"key", "value"} <= events


def test_every_materialized_view_has_its_target_tables_columns(client):
    views = client.query("SELECT name, as_select, create_table_query FROM system.tables WHERE database = {db:String} "
                         "AND engine = 'MaterializedView'", parameters={"db": DB}).result_rows
    assert views, "no materialized view found"
    for name, select, create in views:
        target = create.split(" TO ", 1)[1].split()[0].split(".")[-1]
        produced = [tuple(r[:2]) for r in client.query(f"DESCRIBE ({select})").result_rows]
        assert produced == columns(client, target), (name, target)
