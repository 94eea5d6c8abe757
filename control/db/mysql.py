"""MySQL/MariaDB backend through asyncmy, driven from Trio over :class:`AsyncioBridge`.

Cancelling an asyncmy query closes its socket but the server keeps running the statement
(observed, ``docs/measurements.md#asyncio-bridge``), so every statement carries
``SET STATEMENT max_statement_time=N FOR ...`` (MariaDB). The bridge caps in-flight operations
at the pool size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncmy
from asyncmy.cursors import DictCursor

from control.bridge import AsyncioBridge
from control.db.base import (
    DatabaseError,
    DatabaseUrl,
    Dialect,
    Params,
    Row,
    Statement,
    check_prefix,
    with_prefix,
)


def to_format_style(sql: str) -> str:
    """``?`` placeholders to asyncmy's ``%s`` (our SQL contains no other ``?`` or ``%``)."""
    return sql.replace("?", "%s")


class MysqlDatabase:
    def __init__(
        self,
        url: DatabaseUrl,
        bridge: AsyncioBridge,
        prefix: str = "",
        pool_size: int = 10,
        statement_timeout_s: float = 5.0,
    ) -> None:
        self.dialect: Dialect = "mysql"
        self.prefix = check_prefix(prefix)
        self._url = url
        self._bridge = bridge
        self._pool_size = pool_size
        self._limit_prefix = f"SET STATEMENT max_statement_time={statement_timeout_s:g} FOR "
        self._pool: Any = None

    async def open(self) -> None:
        url = self._url

        async def create() -> Any:
            return await asyncmy.create_pool(
                host=url.host,
                port=url.port,
                user=url.user,
                password=url.password,
                db=url.database,
                minsize=1,
                maxsize=self._pool_size,
                autocommit=True,
                connect_timeout=5,
            )

        try:
            self._pool = await self._bridge.run(create)
        except Exception as exc:
            raise DatabaseError(f"mysql connect {url.redacted()}: {exc}") from exc

    def _text(self, sql: str, limited: bool = True) -> str:
        text = to_format_style(with_prefix(sql, self.prefix))
        return self._limit_prefix + text if limited else text

    async def _call(self, fn: Any) -> Any:
        try:
            return await self._bridge.run(fn)
        except DatabaseError:
            raise
        except Exception as exc:
            if type(exc).__module__.startswith(("asyncmy", "pymysql")) or isinstance(exc, OSError):
                raise DatabaseError(f"mysql: {exc}") from exc
            raise

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        text, args = self._text(sql), tuple(params) or None

        async def run() -> list[Row]:
            async with self._pool.acquire() as conn, conn.cursor(DictCursor) as cur:
                await cur.execute(text, args)
                return list(await cur.fetchall())

        result: list[Row] = await self._call(run)
        return result

    async def execute(self, sql: str, params: Params = ()) -> int:
        return (await self.transaction([(sql, params)]))[0]

    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        prepared = [(self._text(s), tuple(p) or None) for s, p in statements]
        return await self._run_in_transaction(prepared)

    async def _run_in_transaction(self, prepared: list[tuple[str, Any]]) -> list[int]:
        if len(prepared) == 1:  # autocommit makes one statement atomic: save BEGIN and COMMIT
            ((text, args),) = prepared

            async def single() -> list[int]:
                async with self._pool.acquire() as conn, conn.cursor() as cur:
                    return [await cur.execute(text, args)]

            one: list[int] = await self._call(single)
            return one

        async def run() -> list[int]:
            async with self._pool.acquire() as conn:
                await conn.begin()
                try:
                    counts = []
                    async with conn.cursor() as cur:
                        for text, args in prepared:
                            counts.append(await cur.execute(text, args))
                except BaseException:
                    await conn.rollback()
                    raise
                await conn.commit()
                return counts

        result: list[int] = await self._call(run)
        return result

    async def script(self, statements: Sequence[str]) -> None:
        texts = [self._text(s, limited=False) for s in statements]

        async def run() -> None:
            async with self._pool.acquire() as conn, conn.cursor() as cur:
                for text in texts:
                    await cur.execute(text)

        await self._call(run)

    async def ping(self) -> None:
        await self.fetch_all("SELECT 1 AS ok")

    async def aclose(self) -> None:
        pool = self._pool
        if pool is None:
            return
        self._pool = None

        async def close() -> None:
            pool.close()
            await pool.wait_closed()

        await self._bridge.run(close)
