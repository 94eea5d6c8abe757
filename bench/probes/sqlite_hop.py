"""SQLite from Trio: a statement run inline against the same statement through ``trio.to_thread``.

``control/db/sqlite.py`` runs every operation as one whole transaction in one thread hop, because
a statement costs microseconds and the hop costs far more (and fsync must never block the Trio
thread). This measures both, on a WAL database with ``synchronous=NORMAL`` as the backend opens
it: wall time per SELECT by primary key and per INSERT, inline and one hop each.

Run: ``python -m bench.probes.sqlite_hop --ops 2000``.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio


def open_db(folder: Path) -> sqlite3.Connection:
    db = sqlite3.connect(folder / "probe.db", check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE calls (id INTEGER PRIMARY KEY, state TEXT, body TEXT)")
    db.executemany("INSERT INTO calls (state, body) VALUES ('up', ?)", [("x" * 200,)] * 1000)
    return db


def operations(db: sqlite3.Connection) -> dict[str, Callable[[int], object]]:
    return {
        "SELECT": lambda i: db.execute(
            "SELECT * FROM calls WHERE id = ?", (i % 1000 + 1,)
        ).fetchone(),
        "INSERT": lambda i: db.execute("INSERT INTO calls (state, body) VALUES ('up', 'y')"),
    }


async def measure(ops: int) -> list[tuple[str, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        db = open_db(Path(folder))
        for name, op in operations(db).items():
            started = time.perf_counter()
            for i in range(ops):
                op(i)
            inline_us = (time.perf_counter() - started) / ops * 1e6
            started = time.perf_counter()
            for i in range(ops):
                await trio.to_thread.run_sync(op, i)
            hop_us = (time.perf_counter() - started) / ops * 1e6
            rows.append((name, inline_us, hop_us))
        db.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=2000, help="statements per way")
    ns = parser.parse_args()
    for name, inline_us, hop_us in trio.run(measure, ns.ops):
        print(f"{name}: {inline_us:6.1f} us inline, {hop_us:6.1f} us through trio.to_thread")


if __name__ == "__main__":
    main()
