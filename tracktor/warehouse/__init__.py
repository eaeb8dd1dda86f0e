"""ClickHouse through clickhouse-connect: chDB in embedded mode, a server by http(s) DSN.

connect.py (a client for the config's clickhouse section), migrate.py (sql/migrations,
applied in order), tables.py (inserts and query templates), shared.py (one embedded
warehouse shared by every process of the machine), http.py and guard.py (its ClickHouse HTTP
interface, and what that refuses). The SQL itself lives in sql/.
"""
from tracktor.warehouse.connect import connect
from tracktor.warehouse.migrate import migrate, migration_files
from tracktor.warehouse.shared import wait_released
from tracktor.warehouse.tables import TABLE_COLUMNS, deleted_ids, forget, insert_rows, query_template

__all__ = ["TABLE_COLUMNS", "connect", "deleted_ids", "forget", "insert_rows", "migrate", "migration_files", "query_template", "wait_released"]
