"""Writing rows into the tables metric_rollup fills, and reading the query templates.

The tables' columns in insert order are udfs/rollup.py's TABLES (the rows it builds from
topic records); tests/test_drift.py keeps them, the migrations and the topic schemas in step.
"""
from __future__ import annotations

from datetime import datetime, timezone

from tracktor import ROOT
from udfs.rollup import TABLES as TABLE_COLUMNS, TIMESTAMP_COLUMNS

QUERIES = ROOT / "sql" / "queries"
# ClickHouse refuses an insert that touches more partitions than max_partitions_per_insert_block
# (100); the events are partitioned by month, so an insert is split into groups of months.
MAX_PARTITIONS_PER_INSERT = 100


def query_template(name: str, database: str) -> str:
    """sql/queries/<name>.sql with the (validated) database name filled in."""
    return (QUERIES / f"{name}.sql").read_text().replace("{database}", database)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def insert_rows(client, database: str, table: str, rows: list[list]) -> None:
    """Insert rows in TABLE_COLUMNS[table] order whose timestamps are ms since the epoch."""
    columns = list(TABLE_COLUMNS[table])
    stamps = [i for i, c in enumerate(columns) if c in TIMESTAMP_COLUMNS]
    for row in rows:
        for i in stamps:
            row[i] = ms_to_datetime(row[i])
    for part in _by_months(rows, columns.index("ts")) if "ts" in columns else [rows]:
        client.insert(f"{database}.{table}", part, column_names=columns)


def _by_months(rows: list[list], ts: int) -> list[list[list]]:
    """The rows in groups of at most MAX_PARTITIONS_PER_INSERT calendar months (of `ts`)."""
    months: dict[tuple[int, int], list] = {}
    for row in rows:
        months.setdefault((row[ts].year, row[ts].month), []).append(row)
    if len(months) <= MAX_PARTITIONS_PER_INSERT:
        return [rows]
    groups = [months[m] for m in sorted(months)]
    step = MAX_PARTITIONS_PER_INSERT
    return [[r for g in groups[i:i + step] for r in g] for i in range(0, len(groups), step)]


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
