"""A ClickHouse client for a DSN (clickhouse.dsn in the config)."""
from __future__ import annotations

from pathlib import Path


def connect(dsn: str):
    """A client for the DSN. A chDB path is shared between processes (shared.py): the first
    to connect owns it and serves the others, so readers work while jobs write."""
    import clickhouse_connect

    if dsn.startswith("chdb://"):
        path = dsn[len("chdb://"):]
        if path and path != "memory":
            from tracktor.warehouse.shared import open_path
            return open_path(Path(path))
    return clickhouse_connect.get_client(dsn=dsn)
