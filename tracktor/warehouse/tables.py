"""Writing rows into the tables metric_rollup fills, and reading the query templates.

The tables' columns in insert order are udfs/rollup.py's TABLES (the rows it builds from
topic records); tests/test_drift.py keeps them, the migrations and the topic schemas in step.
"""
from __future__ import annotations

from tracktor import ROOT
from udfs.rollup import TABLES as TABLE_COLUMNS, TIMESTAMP_COLUMNS

QUERIES = ROOT / "sql" / "queries"
# ClickHouse refuses an insert that touches more partitions than max_partitions_per_insert_block
# (100); the events are partitioned by month, so an insert is split into groups of months.
MAX_PARTITIONS_PER_INSERT = 100


def query_template(name: str, database: str) -> str:
    """sql/queries/<name>.sql with the (validated) database name filled in."""
    return (QUERIES / f"{name}.sql").read_text().replace("{database}", database)


# Arrow types of the columns that are not strings (the warehouse converts each to its column's type).
ARROW_TYPES = {**dict.fromkeys(TIMESTAMP_COLUMNS, "timestamp"), "version": "uint64", "id_hash": "uint64"}


def insert_rows(client, database: str, table: str, rows: list[list]) -> None:
    """Insert rows in TABLE_COLUMNS[table] order whose timestamps are ms since the epoch, as
    one columnar (Arrow) block: the rows are turned into columns in C, and the warehouse reads
    the block without a per-value step in Python."""
    if not rows:
        return
    block = arrow_block(table, rows)
    for part in _by_months(block) if "ts" in block.column_names else [block]:
        client.insert_arrow(f"{database}.{table}", part)


def arrow_block(table: str, rows: list[list]):
    import pyarrow as pa

    arrays = []
    for name, values in zip(TABLE_COLUMNS[table], zip(*rows)):
        kind = ARROW_TYPES.get(name, "string")
        if kind == "timestamp":
            arrays.append(pa.array(values, pa.int64()).cast(pa.timestamp("ms", tz="UTC")))
        else:
            arrays.append(pa.array(values, pa.uint64() if kind == "uint64" else pa.string()))
    return pa.Table.from_arrays(arrays, names=list(TABLE_COLUMNS[table]))


def _by_months(block) -> list:
    """The block in parts of at most MAX_PARTITIONS_PER_INSERT calendar months (of `ts`)."""
    import pyarrow.compute as pc

    months = pc.add(pc.multiply(pc.year(block["ts"]), 100), pc.month(block["ts"]))
    distinct = pc.unique(months).sort()
    if len(distinct) <= MAX_PARTITIONS_PER_INSERT:
        return [block]
    step = MAX_PARTITIONS_PER_INSERT
    return [block.filter(pc.is_in(months, distinct[i:i + step])) for i in range(0, len(distinct), step)]


def deleted_ids(client, database: str) -> dict[tuple[str, int], int]:
    """The deletion register (udfs/rollup.py Deletions): {(app, id_hash): ms of the deletion}."""
    rows = client.query(f"SELECT app, id_hash, toUnixTimestamp64Milli(max(ts)) FROM {database}.deleted_ids "
                        "GROUP BY app, id_hash").result_rows
    return {(app, int(hashed)): int(at) for app, hashed, at in rows}


def forget(client, database: str, app: str, ids: list[str]) -> list[str]:
    """Remove every row naming one of `ids` of `app` from every table that names people
    (a deleted person); returns the tables. The parts are rewritten before this returns,
    so nothing of the person stays on disk either."""
    tables = [t for (t,) in client.query(
        "SELECT table FROM system.columns WHERE database = {db:String} AND name IN ('distinct_id', 'person_id') "
        "AND table IN (SELECT name FROM system.tables WHERE database = {db:String} AND engine LIKE '%MergeTree') "
        "GROUP BY table ORDER BY table", parameters={"db": database}).result_rows]
    for table in tables:
        names = {c for (c,) in client.query("SELECT name FROM system.columns WHERE database = {db:String} "
                                            "AND table = {t:String}", parameters={"db": database, "t": table}).result_rows}
        which = " OR ".join(f"{c} IN {{ids:Array(String)}}" for c in ("distinct_id", "person_id") if c in names)
        client.command(f"ALTER TABLE {database}.{table} DELETE WHERE app = {{app:String}} AND ({which}) "
                       "SETTINGS mutations_sync = 1", parameters={"app": app, "ids": ids})
    return tables
