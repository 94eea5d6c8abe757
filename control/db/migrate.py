"""Versioned schema migrations, applied by ``callbridge db migrate`` (never silently on MariaDB).

Migrations are ``control/migrations/NNNN_name.sql`` files, written once for both dialects (see
``0001_init.sql``). Applied versions are recorded in ``{p}schema_migrations``; a migration's
statements and its record are applied together where the backend can (SQLite: one transaction;
MariaDB DDL commits implicitly, so a failed migration is reported with the statement that failed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from control.db.base import Database, DatabaseError, now_ts

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_TABLE_OPTIONS = {"sqlite": "", "mysql": " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"}


class MigrationError(Exception):
    """A migration file is malformed or failed to apply."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self, dialect: str) -> list[str]:
        text = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        text = text.replace("{table_options}", _TABLE_OPTIONS[dialect])
        return [s.strip() for s in text.split(";") if s.strip()]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"migration file name must be NNNN_name.sql: {path.name}")
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must be 1..N without gaps: {versions}")
    return found


async def applied_versions(db: Database) -> set[int]:
    await db.script(
        [
            "CREATE TABLE IF NOT EXISTS {p}schema_migrations ("
            " version INTEGER NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL,"
            " tm_applied VARCHAR(26) NOT NULL)"
        ]
    )
    rows = await db.fetch_all("SELECT version FROM {p}schema_migrations")
    return {int(r["version"]) for r in rows}


async def pending(db: Database, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    done = await applied_versions(db)
    return [m for m in load_migrations(directory) if m.version not in done]


async def migrate(db: Database, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply every pending migration in order; returns those applied."""
    todo = await pending(db, directory)
    for mig in todo:
        record = (
            "INSERT INTO {p}schema_migrations (version, name, tm_applied) VALUES (?, ?, ?)",
            (mig.version, mig.name, now_ts()),
        )
        try:
            if db.dialect == "sqlite":
                await db.transaction([(s, ()) for s in mig.statements(db.dialect)] + [record])
            else:
                await db.script(mig.statements(db.dialect))
                await db.transaction([record])
        except DatabaseError as exc:
            raise MigrationError(f"migration {mig.version:04d}_{mig.name} failed: {exc}") from exc
    return todo


async def drop_all(db: Database, directory: Path = MIGRATIONS_DIR) -> None:
    """Drop every table the migrations create (tests' cleanup of a per-run prefix)."""
    tables = ["schema_migrations"]
    for mig in load_migrations(directory):
        tables += re.findall(r"CREATE TABLE \{p\}(\w+)", mig.sql)
    await db.script([f"DROP TABLE IF EXISTS {{p}}{t}" for t in tables])
