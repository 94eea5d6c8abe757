"""The storage seam: one small async interface over SQLite and MariaDB.

SQL is written once, portable between both: ``?`` placeholders (the MariaDB backend rewrites them
to ``%s``), ``{p}`` where the table prefix goes (tests run under a per-run prefix so
parallel and old runs never collide), no literal ``%`` or ``?`` anywhere else. Parameters are
always bound, never formatted into the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

Row = dict[str, Any]
Params = Sequence[Any]
Statement = tuple[str, Params]
Dialect = Literal["sqlite", "mysql"]


class DatabaseError(Exception):
    """A storage operation failed (connection, constraint, timeout); carries the cause."""


class DatabaseUrlError(ValueError):
    """A ``--db`` URL we cannot use."""


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    dialect: Dialect
    path: str = ""  # sqlite file (":memory:" allowed)
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""
    database: str = ""

    @classmethod
    def parse(cls, text: str) -> DatabaseUrl:
        parts = urlsplit(text)
        if parts.scheme == "sqlite":
            # sqlite:///relative.db, sqlite:////abs/path.db, sqlite:///:memory:
            path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
            if not path:
                raise DatabaseUrlError(f"sqlite URL needs a file path: {text!r}")
            return cls("sqlite", path=path)
        if parts.scheme in ("mysql", "mariadb"):
            database = parts.path.lstrip("/")
            if not database or not parts.hostname:
                raise DatabaseUrlError(f"mysql URL needs host and database: {text!r}")
            try:
                port = parts.port or 3306
            except ValueError as exc:
                raise DatabaseUrlError(f"bad port in {text!r}") from exc
            return cls(
                "mysql",
                host=parts.hostname,
                port=port,
                user=unquote(parts.username or "root"),
                password=unquote(parts.password or ""),
                database=database,
            )
        raise DatabaseUrlError(f"unsupported database URL {text!r} (sqlite:///FILE or mysql://...)")

    def redacted(self) -> str:
        if self.dialect == "sqlite":
            return f"sqlite:///{self.path}"
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


class Database(Protocol):
    dialect: Dialect
    prefix: str

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write in its own transaction; returns the affected row count."""

    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        """Run writes atomically: all or none; one thread hop or one pooled connection."""

    async def script(self, statements: Sequence[str]) -> None:
        """DDL for migrations, in order (MariaDB DDL is not transactional)."""

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


async def fetch_one(db: Database, sql: str, params: Params = ()) -> Row | None:
    rows = await db.fetch_all(sql, params)
    return rows[0] if rows else None


def with_prefix(sql: str, prefix: str) -> str:
    return sql.replace("{p}", prefix)


def now_ts() -> str:
    """Microsecond UTC time as fixed-width text: sortable, exact, the same in both backends."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def check_prefix(prefix: str) -> str:
    if prefix and not (prefix.replace("_", "").isalnum() and prefix.isascii()):
        raise DatabaseUrlError(f"table prefix must be [A-Za-z0-9_]: {prefix!r}")
    return prefix
