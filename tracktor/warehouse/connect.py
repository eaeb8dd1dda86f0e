"""A ClickHouse client for the config's clickhouse section (or a bare DSN)."""
from __future__ import annotations

from tracktor.config.settings import ClickHouseSettings


def connect(clickhouse: ClickHouseSettings | str):
    """A client for `clickhouse` (cfg.clickhouse, or a DSN with the section's defaults). A chDB
    path is shared between processes (shared.py): the first to connect owns it and serves
    the others over ClickHouse's HTTP interface, so readers work while jobs write."""
    import clickhouse_connect

    settings = ClickHouseSettings(dsn=clickhouse) if isinstance(clickhouse, str) else clickhouse
    if settings.chdb_path is not None:
        from tracktor.warehouse.shared import open_path
        return open_path(settings.chdb_path, settings)
    return clickhouse_connect.get_client(dsn=settings.dsn)
