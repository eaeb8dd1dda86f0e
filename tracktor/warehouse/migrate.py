"""sql/migrations/NNNN_*.sql, applied in order and recorded in schema_migrations."""
from __future__ import annotations

import re
from pathlib import Path

from tracktor import ROOT

MIGRATIONS = ROOT / "sql" / "migrations"


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
        for statement in statements(path.read_text().replace("{database}", database)):
            client.command(statement)
        client.insert(f"{database}.schema_migrations", [[path.stem]], column_names=["name"])
        applied.append(path.stem)
    return applied


def statements(sql: str) -> list[str]:
    """The statements of a migration file (comments dropped, split at `;` line ends)."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]
