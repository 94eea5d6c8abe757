from __future__ import annotations

import pytest
import trio

from control.bridge import AsyncioBridge
from control.db import Database, DatabaseError, DatabaseUrl, fetch_one
from control.db.base import DatabaseUrlError, check_prefix
from control.db.migrate import MigrationError, applied_versions, load_migrations, migrate, pending

INSERT_CUSTOMER = (
    "INSERT INTO {p}customers (id, customer_id, name, tm_create, tm_update) VALUES (?,?,?,?,?)"
)


async def test_migrations_recorded_and_idempotent(db: Database) -> None:
    versions = {m.version for m in load_migrations()}
    assert await applied_versions(db) == versions
    assert await pending(db) == []
    assert await migrate(db) == []  # second run applies nothing


async def test_transaction_rolls_back_as_a_whole(db: Database) -> None:
    ins = (
        "INSERT INTO {p}customers (id, customer_id, name, tm_create, tm_update) VALUES (?,?,?,?,?)"
    )
    row = ("c1", "c1", "one", "2026-01-01 00:00:00.000001", "2026-01-01 00:00:00.000001")
    with pytest.raises(DatabaseError):
        await db.transaction([(ins, row), (ins, row)])  # duplicate primary key
    assert await db.fetch_all("SELECT id FROM {p}customers") == []
    assert await db.transaction([(ins, row)]) == [1]
    got = await fetch_one(db, "SELECT name, tm_create FROM {p}customers WHERE id = ?", ["c1"])
    assert got == {"name": "one", "tm_create": "2026-01-01 00:00:00.000001"}


async def test_parameters_are_bound_not_formatted(db: Database) -> None:
    hostile = "x'); DROP TABLE {p}customers; --"
    ins = (
        "INSERT INTO {p}customers (id, customer_id, name, tm_create, tm_update) VALUES (?,?,?,?,?)"
    )
    await db.execute(ins, ["c2", "c2", hostile, "t", "t"])
    got = await fetch_one(db, "SELECT name FROM {p}customers WHERE name = ?", [hostile])
    assert got == {"name": hostile}


async def test_bad_sql_is_a_database_error(db: Database) -> None:
    with pytest.raises(DatabaseError):
        await db.fetch_all("SELECT nope FROM {p}customers")


async def test_ping(db: Database) -> None:
    await db.ping()


def test_url_parsing() -> None:
    assert DatabaseUrl.parse("sqlite:///data/cb.db").path == "data/cb.db"
    assert DatabaseUrl.parse("sqlite:////abs/cb.db").path == "/abs/cb.db"
    m = DatabaseUrl.parse("mysql://u:p%40ss@db.example:3307/callbridge")
    assert (m.host, m.port, m.user, m.password, m.database) == (
        "db.example",
        3307,
        "u",
        "p@ss",
        "callbridge",
    )
    assert m.redacted() == "mysql://u@db.example:3307/callbridge"
    for bad in ["postgres://x/y", "sqlite://", "mysql://host", "mysql://h:notaport/db", "nope"]:
        with pytest.raises(DatabaseUrlError):
            DatabaseUrl.parse(bad)
    with pytest.raises(DatabaseUrlError):
        check_prefix("t; drop")


def test_bad_migration_names(tmp_path: object) -> None:
    from pathlib import Path

    d = Path(str(tmp_path))
    (d / "0001_a.sql").write_text("SELECT 1")
    (d / "0003_c.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="without gaps"):
        load_migrations(d)
    (d / "bad.sql").write_text("")
    with pytest.raises(MigrationError, match="NNNN_name"):
        load_migrations(d)


async def test_bridge_cancellation_unwinds_the_asyncio_task(bridge: AsyncioBridge) -> None:
    import asyncio

    unwound = []

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            unwound.append(True)

    with trio.move_on_after(0.05):
        await bridge.run(slow)
    assert unwound == [True]  # the asyncio side finished unwinding before run() returned

    async def boom() -> None:
        raise ValueError("inside asyncio")

    with pytest.raises(ValueError, match="inside asyncio"):
        await bridge.run(boom)

    async def answer() -> int:
        return 42

    assert await bridge.run(answer) == 42
