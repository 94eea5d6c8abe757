"""Rows of the control plane's tables, scoped by customer, with soft delete and cache-aside.

Column names come only from the fixed :data:`TABLES` whitelist, so they may appear in SQL text;
every value is a bound parameter. A read for another customer's row answers ``None`` exactly like
a missing row, which the API turns into 404. Writes follow the house order: database first, then
cache invalidation; the caller publishes the event last.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from control.db.base import Database, Row, now_ts

_COMMON = ("id", "customer_id", "tm_create", "tm_update", "tm_delete")


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]
    json_columns: frozenset[str] = frozenset()
    cached: bool = False

    @property
    def all_columns(self) -> tuple[str, ...]:
        return _COMMON + self.columns


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        # status, email, description, tm_disable: migration 0005 (control/customers.py)
        Table("customers", ("name", "status", "email", "description", "tm_disable"), cached=True),
        Table("accesskeys", ("name", "role", "token_hash", "token_prefix", "tm_expire")),
        Table("agents", ("name", "is_default", "detail"), frozenset({"detail"}), cached=True),
        Table("agent_routes", ("agent_id", "kind", "value")),
        Table(
            "calls",
            (
                "agent_id",
                "leg",
                "leg_ref",
                "direction",
                "source",
                "destination",
                "status",
                "hangup_cause",
                "hangup_reason",
                "duration_ms",
                "tm_answer",
                "tm_hangup",
                "node_id",  # the node holding the live call (migration 0002)
                "worker_id",
            ),
            cached=True,
        ),
        Table("transcripts", ("call_id", "role", "text")),
        # one per ended call: migration 0006 (control/summaries.py)
        Table(
            "summaries",
            ("call_id", "method", "disposition", "text", "detail"),
            frozenset({"detail"}),
        ),
        # conference options and participant state: migration 0003 (control/conferences.py)
        # node_id, worker_id: who holds its bridge, migration 0008 (control/conference_links.py)
        Table(
            "conferences",
            (
                "name",
                "status",
                "tones",
                "max_participants",
                "on_leave",
                "mixer",
                "node_id",
                "worker_id",
            ),
        ),
        Table(
            "participants",
            (
                "conference_id",
                "call_id",
                "status",
                "mute_send",
                "mute_hear",
                "talk_volume_pct",
                "listen_volume_pct",
                "moderator",
                "tm_leave",
            ),
        ),
        Table(
            "webhooks", ("url", "secret", "event_types", "tls_verify"), frozenset({"event_types"})
        ),
        Table(
            "deliveries", ("webhook_id", "event_id", "attempt", "status", "status_code", "error")
        ),
        Table("events", ("type", "resource_id", "data"), frozenset({"data"})),
        Table("messages", ("call_id", "destination", "text", "status", "provider")),
        Table("audits", ("actor", "action", "path", "status_code", "request_id", "remote_addr")),
    )
}


class Cache(Protocol):
    """Cache-aside store (Redis); values are JSON text."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl_s: int) -> None: ...

    async def delete(self, key: str) -> None: ...


class UnknownColumn(KeyError):
    """A write named a column its table does not have (a programming error, not user input)."""


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Row]
    next_page_token: str


class Store:
    def __init__(self, db: Database, cache: Cache | None = None, cache_ttl_s: int = 30) -> None:
        self.db = db
        self.cache = cache
        self.cache_ttl_s = cache_ttl_s

    # -- encoding -------------------------------------------------------------------------------
    @staticmethod
    def _encode(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in values.items():
            if key not in table.all_columns:
                raise UnknownColumn(f"{table.name}.{key}")
            out[key] = json.dumps(value) if key in table.json_columns else value
        return out

    @staticmethod
    def _decode(table: Table, row: Row) -> Row:
        for key in table.json_columns:
            if isinstance(row.get(key), str):
                row[key] = json.loads(row[key])
        return row

    def _key(self, table: Table, row_id: str) -> str:
        return f"callbridge:{self.db.prefix}{table.name}:{row_id}"

    # -- writes ---------------------------------------------------------------------------------
    def insert_statement(
        self, table_name: str, values: Mapping[str, Any]
    ) -> tuple[Row, str, list[Any]]:
        """The row (with id and timestamps) and its INSERT, for callers batching a transaction."""
        table = TABLES[table_name]
        ts = now_ts()
        row: Row = {"id": str(uuid.uuid4()), "tm_create": ts, "tm_update": ts, "tm_delete": None}
        row.update(values)
        enc = self._encode(table, row)
        cols = ", ".join(enc)
        marks = ", ".join("?" for _ in enc)
        return row, f"INSERT INTO {{p}}{table.name} ({cols}) VALUES ({marks})", list(enc.values())

    async def insert(self, table_name: str, values: Mapping[str, Any]) -> Row:
        row, sql, params = self.insert_statement(table_name, values)
        await self.db.execute(sql, params)
        return row

    def update_statement(
        self, table_name: str, row_id: str, customer_id: str | None, values: Mapping[str, Any]
    ) -> tuple[str, list[Any]]:
        table = TABLES[table_name]
        enc = self._encode(table, {**values, "tm_update": now_ts()})
        sets = ", ".join(f"{k} = ?" for k in enc)
        where, params = self._scope(row_id, customer_id)
        return f"UPDATE {{p}}{table.name} SET {sets} WHERE {where}", [*enc.values(), *params]

    async def update(
        self, table_name: str, row_id: str, customer_id: str | None, values: Mapping[str, Any]
    ) -> Row | None:
        count = await self.db.execute(
            *self.update_statement(table_name, row_id, customer_id, values)
        )
        if not count:
            return None
        await self.invalidate(table_name, row_id)
        return await self.get(table_name, row_id, customer_id)

    def delete_statement(
        self, table_name: str, row_id: str, customer_id: str | None
    ) -> tuple[str, list[Any]]:
        where, params = self._scope(row_id, customer_id)
        ts = now_ts()
        return (
            f"UPDATE {{p}}{TABLES[table_name].name} SET tm_delete = ?, tm_update = ? WHERE {where}",
            [ts, ts, *params],
        )

    async def delete(self, table_name: str, row_id: str, customer_id: str | None) -> bool:
        """Soft delete: the row stays, with ``tm_delete`` set, and disappears from reads."""
        count = await self.db.execute(*self.delete_statement(table_name, row_id, customer_id))
        if count:
            await self.invalidate(table_name, row_id)
        return bool(count)

    async def invalidate(self, table_name: str, row_id: str) -> None:
        if self.cache is not None and TABLES[table_name].cached:
            await self.cache.delete(self._key(TABLES[table_name], row_id))

    @staticmethod
    def _scope(row_id: str, customer_id: str | None) -> tuple[str, list[Any]]:
        if customer_id is None:
            return "id = ? AND tm_delete IS NULL", [row_id]
        return "id = ? AND customer_id = ? AND tm_delete IS NULL", [row_id, customer_id]

    # -- reads ----------------------------------------------------------------------------------
    async def get(self, table_name: str, row_id: str, customer_id: str | None) -> Row | None:
        """One live row; ``None`` if missing, deleted, or another customer's."""
        table = TABLES[table_name]
        row = await self._get_cached(table, row_id)
        if row is None or (customer_id is not None and row["customer_id"] != customer_id):
            return None
        return row

    async def _get_cached(self, table: Table, row_id: str) -> Row | None:
        key = self._key(table, row_id)
        if self.cache is not None and table.cached:
            hit = await self.cache.get(key)
            if hit is not None:
                return self._decode(table, json.loads(hit))
        cols = ", ".join(table.all_columns)
        rows = await self.db.fetch_all(
            f"SELECT {cols} FROM {{p}}{table.name} WHERE id = ? AND tm_delete IS NULL", [row_id]
        )
        if not rows:
            return None
        if self.cache is not None and table.cached:
            await self.cache.set(key, json.dumps(rows[0], default=str), self.cache_ttl_s)
        return self._decode(table, dict(rows[0]))

    async def find(self, table_name: str, **equal: Any) -> list[Row]:
        """Live rows whose columns equal ``equal`` (internal lookups, unpaginated, small)."""
        table = TABLES[table_name]
        for key in equal:
            if key not in table.all_columns:
                raise UnknownColumn(f"{table.name}.{key}")
        where = " AND ".join([f"{k} = ?" for k in equal] + ["tm_delete IS NULL"])
        cols = ", ".join(table.all_columns)
        rows = await self.db.fetch_all(
            f"SELECT {cols} FROM {{p}}{table.name} WHERE {where} ORDER BY tm_create",
            list(equal.values()),
        )
        return [self._decode(table, dict(r)) for r in rows]

    async def list(
        self,
        table_name: str,
        customer_id: str | None,
        page_size: int = 50,
        page_token: str = "",
        **equal: Any,
    ) -> Page:
        """Newest first. ``page_token`` is the previous page's last ``tm_create`` (VoIPBIN's
        shape); rows created in the same microsecond as a page boundary are ordered by id.
        ``customer_id`` None lists across customers (the platform admin's customer list only)."""
        table = TABLES[table_name]
        clauses = ["tm_delete IS NULL"]
        params: list[Any] = []
        if customer_id is not None:
            clauses.append("customer_id = ?")
            params.append(customer_id)
        for key, value in equal.items():
            if key not in table.all_columns:
                raise UnknownColumn(f"{table.name}.{key}")
            clauses.append(f"{key} = ?")
            params.append(value)
        if page_token:
            clauses.append("tm_create < ?")
            params.append(page_token)
        cols = ", ".join(table.all_columns)
        rows = await self.db.fetch_all(
            f"SELECT {cols} FROM {{p}}{table.name} WHERE {' AND '.join(clauses)}"
            f" ORDER BY tm_create DESC, id DESC LIMIT ?",
            [*params, page_size],
        )
        decoded = [self._decode(table, dict(r)) for r in rows]
        token = decoded[-1]["tm_create"] if len(decoded) == page_size else ""
        return Page(decoded, token)
