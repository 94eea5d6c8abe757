from __future__ import annotations

import pytest

from control.db import Database
from control.store import Store, UnknownColumn


async def test_crud_soft_delete_and_customer_scope(db: Database) -> None:
    store = Store(db)
    a = await store.insert(
        "agents",
        {
            "customer_id": "cust-a",
            "name": "a",
            "is_default": 0,
            "detail": {"prompt": "hi", "tools": ["end_call"]},
        },
    )
    assert len(a["id"]) == 36 and len(a["tm_create"]) == 26
    got = await store.get("agents", a["id"], "cust-a")
    assert got is not None and got["detail"] == {"prompt": "hi", "tools": ["end_call"]}
    assert await store.get("agents", a["id"], "cust-b") is None  # another customer: not found
    assert await store.update("agents", a["id"], "cust-b", {"name": "stolen"}) is None
    assert not await store.delete("agents", a["id"], "cust-b")
    upd = await store.update("agents", a["id"], "cust-a", {"name": "renamed"})
    assert upd is not None and upd["name"] == "renamed" and upd["tm_update"] >= a["tm_update"]
    assert await store.delete("agents", a["id"], "cust-a")
    assert await store.get("agents", a["id"], "cust-a") is None
    raw = await db.fetch_all("SELECT tm_delete FROM {p}agents WHERE id = ?", [a["id"]])
    assert raw[0]["tm_delete"] is not None  # soft: the row is still there


async def test_list_paginates_newest_first_and_filters(db: Database) -> None:
    store = Store(db)
    ids = []
    for i in range(5):
        row = await store.insert(
            "conferences",
            {"customer_id": "c", "name": f"n{i}", "status": "ended" if i % 2 else "progressing"},
        )
        ids.append(row["id"])
    await store.insert(
        "conferences", {"customer_id": "other", "name": "x", "status": "progressing"}
    )
    first = await store.list("conferences", "c", page_size=2)
    assert [r["name"] for r in first.rows] == ["n4", "n3"] and first.next_page_token
    second = await store.list("conferences", "c", page_size=2, page_token=first.next_page_token)
    assert [r["name"] for r in second.rows] == ["n2", "n1"]
    third = await store.list("conferences", "c", page_size=2, page_token=second.next_page_token)
    assert [r["name"] for r in third.rows] == ["n0"] and third.next_page_token == ""
    ended = await store.list("conferences", "c", status="ended")
    assert sorted(r["name"] for r in ended.rows) == ["n1", "n3"]


async def test_unknown_column_is_refused(db: Database) -> None:
    store = Store(db)
    with pytest.raises(UnknownColumn):
        await store.insert("agents", {"customer_id": "c", "evil; DROP": 1})
    with pytest.raises(UnknownColumn):
        await store.list("agents", "c", **{"name = name OR 1": "x"})


class DictCache:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.ops: list[str] = []

    async def get(self, key: str) -> str | None:
        self.ops.append("get")
        return self.data.get(key)

    async def set(self, key: str, value: str, ttl_s: int) -> None:
        self.ops.append("set")
        self.data[key] = value

    async def delete(self, key: str) -> None:
        self.ops.append("delete")
        self.data.pop(key, None)


async def test_cache_aside_read_and_invalidate_on_write(db: Database) -> None:
    cache = DictCache()
    store = Store(db, cache)
    a = await store.insert(
        "agents", {"customer_id": "c", "name": "a", "is_default": 1, "detail": {}}
    )
    await store.get("agents", a["id"], "c")
    await store.get("agents", a["id"], "c")
    assert cache.ops == ["get", "set", "get"]  # second read served from the cache
    await store.update("agents", a["id"], "c", {"name": "b"})
    got = await store.get("agents", a["id"], "c")
    assert got is not None and got["name"] == "b"  # never a stale read after a write
    await store.delete("agents", a["id"], "c")
    assert await store.get("agents", a["id"], "c") is None
