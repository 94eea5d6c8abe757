"""The SQLite connection's operations: in order, one thread at a time, batched when they queue."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import trio

from control.db import batched_hop
from control.db.batched_hop import BatchedHop


@pytest.fixture
def conn() -> sqlite3.Connection:
    c = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    c.execute("CREATE TABLE t (n INTEGER)")
    return c


async def test_queued_operations_share_hops_and_keep_their_order(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops = []
    real = batched_hop._run_batch

    def counting(batch: list[batched_hop._Op[object]], c: sqlite3.Connection) -> None:
        hops.append(len(batch))
        real(batch, c)

    monkeypatch.setattr(batched_hop, "_run_batch", counting)
    db = BatchedHop(conn)
    threads: set[int] = set()
    in_hop, release = threading.Event(), threading.Event()

    def hold(c: sqlite3.Connection) -> None:
        in_hop.set()
        release.wait(10)

    def insert(n: int) -> int:
        threads.add(threading.get_ident())
        return conn.execute("INSERT INTO t VALUES (?)", (n,)).rowcount

    async with trio.open_nursery() as nursery:
        nursery.start_soon(db.run, hold)  # the driver's first hop, held open
        await trio.to_thread.run_sync(in_hop.wait)
        for n in range(50):  # all queued while that hop runs
            nursery.start_soon(db.run, lambda c, n=n: insert(n))
            await trio.lowlevel.checkpoint()  # queued in this order
        release.set()
    rows = await db.run(lambda c: [r[0] for r in c.execute("SELECT n FROM t ORDER BY rowid")])
    assert rows == list(range(50))
    assert hops == [1, 50, 1]  # the held hop, then every queued operation in one hop, the read
    assert threading.get_ident() not in threads  # never on the Trio thread


async def test_an_error_reaches_its_own_caller_only(conn: sqlite3.Connection) -> None:
    db = BatchedHop(conn)
    results: dict[str, object] = {}

    async def call(name: str, sql: str) -> None:
        try:
            results[name] = await db.run(lambda c: c.execute(sql).fetchall())
        except sqlite3.Error as exc:
            results[name] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, "good1", "SELECT 1")
        nursery.start_soon(call, "bad", "SELECT * FROM missing")
        nursery.start_soon(call, "good2", "SELECT 2")
    assert results["good1"] == [(1,)] and results["good2"] == [(2,)]
    assert isinstance(results["bad"], sqlite3.OperationalError)


async def test_a_cancelled_caller_that_had_not_started_is_skipped(
    conn: sqlite3.Connection,
) -> None:
    db = BatchedHop(conn)
    release = threading.Event()

    def slow(c: sqlite3.Connection) -> None:
        release.wait(5)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(db.run, slow)  # the driver, busy in its hop
        await trio.sleep(0.05)
        with trio.move_on_after(0.05) as scope:  # queued behind it, then given up
            await db.run(lambda c: c.execute("INSERT INTO t VALUES (99)"))
        assert scope.cancelled_caught
        release.set()
    assert await db.run(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 0
