"""SQLite backend (stdlib), the zero-config default.

Every operation is one whole transaction in one ``trio.to_thread`` hop: a statement takes 8-29 us
inline but a hop ~200 us (``python -m bench.probes.sqlite_hop``), and fsync must never run on the
Trio thread. WAL with
``synchronous=NORMAL`` lets readers proceed during a write. One connection, used by one thread at a
time (SQLite has a single writer anyway); operations that queue up while a hop runs share the
next hop (:mod:`control.db.batched_hop`); a hop is not abandoned on cancel, so a transaction is
never left half-done.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar

from control.db.base import (
    DatabaseError,
    Dialect,
    Params,
    Row,
    Statement,
    check_prefix,
    with_prefix,
)
from control.db.batched_hop import BatchedHop

T = TypeVar("T")


class SqliteDatabase:
    def __init__(self, path: str, prefix: str = "", busy_timeout_s: float = 5.0) -> None:
        self.dialect: Dialect = "sqlite"
        self.prefix = check_prefix(prefix)
        self._conn = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._hops = BatchedHop(self._conn)

    async def _hop(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._hops.run(fn)
        except sqlite3.Error as exc:
            raise DatabaseError(f"sqlite: {exc}") from exc

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        text = with_prefix(sql, self.prefix)

        def run(conn: sqlite3.Connection) -> list[Row]:
            return [dict(r) for r in conn.execute(text, tuple(params)).fetchall()]

        return await self._hop(run)

    async def execute(self, sql: str, params: Params = ()) -> int:
        return (await self.transaction([(sql, params)]))[0]

    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        prepared = [(with_prefix(s, self.prefix), tuple(p)) for s, p in statements]

        def run(conn: sqlite3.Connection) -> list[int]:
            counts: list[int] = []
            conn.execute("BEGIN IMMEDIATE")
            try:
                for text, args in prepared:
                    counts.append(conn.execute(text, args).rowcount)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return counts

        return await self._hop(run)

    async def script(self, statements: Sequence[str]) -> None:
        await self.transaction([(s, ()) for s in statements])

    async def ping(self) -> None:
        await self.fetch_all("SELECT 1 AS ok")

    async def aclose(self) -> None:
        await self._hops.run(lambda conn: conn.close())
