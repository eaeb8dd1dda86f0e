"""ClickHouse through clickhouse-connect: chDB in embedded mode, a server by http(s) DSN.

Everything reads and writes through `connect()`, migrations through `migrate()`; the SQL
itself lives in sql/.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from tracktor import ROOT

SQL_DIR = ROOT / "sql"
MIGRATIONS = SQL_DIR / "migrations"
# Tables metric_rollup writes, with their columns in insert order.
TABLE_COLUMNS = {
    "events": ["app", "event_id", "kind", "event", "distinct_id", "person_id", "ts", "received_at", "data"],
    "identities": ["app", "distinct_id", "person_id", "version", "ts", "event_id"],
    "persons": ["app", "person_id", "properties", "version", "ts", "merged_into"],
    "property_sets": ["app", "distinct_id", "key", "value", "ts", "event_id"],
    "segment_changes": ["app", "segment", "person_id", "change", "version", "ts"],
}


def connect(dsn: str):
    """A client for the DSN. A chDB path is shared between processes (tracktor/shared_chdb.py):
    the first to connect owns it and serves the others, so readers work while jobs write."""
    import clickhouse_connect

    if dsn.startswith("chdb://"):
        path = dsn[len("chdb://"):]
        if path and path != "memory":
            from tracktor.warehouse.shared import open_path
            return open_path(Path(path))
    return clickhouse_connect.get_client(dsn=dsn)


def query_template(name: str, database: str) -> str:
    """sql/queries/<name>.sql with the (validated) database name filled in."""
    return (SQL_DIR / "queries" / f"{name}.sql").read_text().replace("{database}", database)


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.sql"))


def migrate(client, database: str) -> list[str]:
    """Apply the migrations not applied yet, in order; returns their names. Idempotent."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(name String, applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY name"
    )
    done = {r[0] for r in client.query(f"SELECT name FROM {database}.schema_migrations").result_rows}
    applied = []
    for path in migration_files():
        if path.stem in done:
            continue
        sql = path.read_text().replace("{database}", database)
        for statement in _statements(sql):
            client.command(statement)
        client.insert(f"{database}.schema_migrations", [[path.stem]], column_names=["name"])
        applied.append(path.stem)
    return applied


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


TIMESTAMP_COLUMNS = {"ts", "received_at"}


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def insert_rows(client, database: str, table: str, rows: list[list]) -> None:
    """Insert rows of TABLE_COLUMNS[table] order whose timestamps are ms since the epoch."""
    columns = TABLE_COLUMNS[table]
    stamps = [i for i, c in enumerate(columns) if c in TIMESTAMP_COLUMNS]
    for row in rows:
        for i in stamps:
            row[i] = ms_to_datetime(row[i])
    client.insert(f"{database}.{table}", rows, column_names=columns)
