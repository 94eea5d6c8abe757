"""Storage: SQLite (embedded default) and MariaDB (asyncmy over the asyncio bridge)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from control.bridge import AsyncioBridge
from control.db.base import Database, DatabaseError, DatabaseUrl, fetch_one, now_ts

__all__ = ["Database", "DatabaseError", "DatabaseUrl", "fetch_one", "now_ts", "open_database"]


@asynccontextmanager
async def open_database(
    url: DatabaseUrl, prefix: str = "", bridge: AsyncioBridge | None = None
) -> AsyncIterator[Database]:
    """Open the backend ``url`` names; MariaDB needs the process's asyncio ``bridge``."""
    db: Database
    if url.dialect == "sqlite":
        from control.db.sqlite import SqliteDatabase

        db = SqliteDatabase(url.path, prefix)
    else:
        from control.db.mysql import MysqlDatabase

        if bridge is None:
            raise DatabaseError("the MariaDB backend needs an asyncio bridge")
        mysql = MysqlDatabase(url, bridge, prefix)
        await mysql.open()
        db = mysql
    try:
        yield db
    finally:
        await db.aclose()
