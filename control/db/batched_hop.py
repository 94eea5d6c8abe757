"""Operations on one SQLite connection, run in worker-thread hops that carry every operation
queued meanwhile.

One hop per operation behind a lock made the k-th queued operation wait k round trips through the
thread pool and Trio's scheduler; under load (a burst of calls starting, ~10 statements each) a
round trip took 80-250 ms and new calls waited seconds for their rows. Here the first waiter
drives: it runs the queue in a hop, then whatever queued during that hop, until the queue is
empty, so N queued operations cost about two hops. Order is kept and the connection is only ever
used by one thread at a time. A hop is never abandoned (a transaction is never left half-done);
an operation whose waiter was cancelled before its hop began is skipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class _Op(Generic[T]):
    __slots__ = ("abandoned", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[[sqlite3.Connection], T]) -> None:
        self.fn = fn
        self.done = trio.Event()
        self.abandoned = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def run(self, conn: sqlite3.Connection) -> None:
        if self.abandoned:
            return
        try:
            self.result = self.fn(conn)
        except Exception as exc:  # delivered to the waiter, in its own task
            self.error = exc


def _run_batch(batch: list[_Op[object]], conn: sqlite3.Connection) -> None:
    for op in batch:
        op.run(conn)


class BatchedHop:
    """Runs ``fn(conn)`` for callers in order, batching the ones that queue up."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._queue: list[_Op[object]] = []
        self._draining = False

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        op: _Op[T] = _Op(fn)
        self._queue.append(op)  # type: ignore[arg-type]
        if self._draining:
            try:
                await op.done.wait()
            except trio.Cancelled:
                op.abandoned = True  # skipped unless its hop already began
                raise
        else:
            await self._drain()
        if op.error is not None:
            raise op.error
        return op.result  # type: ignore[return-value]

    async def _drain(self) -> None:
        self._draining = True
        try:
            with trio.CancelScope(shield=True):  # the others' operations depend on this task
                while self._queue:
                    batch, self._queue = self._queue, []
                    await trio.to_thread.run_sync(_run_batch, batch, self._conn)
                    for op in batch:
                        op.done.set()
        finally:
            self._draining = False
        await trio.lowlevel.checkpoint_if_cancelled()
