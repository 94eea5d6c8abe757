"""Run asyncio-only libraries (asyncmy, redis.asyncio) from the Trio process.

Of the options measured before this code (``docs/measurements.md#asyncio-bridge``: trio-asyncio
halved HTTP throughput, sync drivers in ``trio.to_thread`` cost ~5x the CPU per query), this one
served ~80 % of plain asyncio Quart's requests/s: one asyncio loop in a dedicated thread owns the
pools. Trio starts each coroutine with ``loop.call_soon_threadsafe`` and is woken through
``TrioToken.run_sync_soon``, so no worker thread is held per call. On Trio cancellation the
asyncio task is cancelled and we wait, shielded, until it has unwound (asyncmy closes the socket;
the server side is bounded by ``max_statement_time``). In-flight calls are capped by a semaphore
sized like the pool, so a burst queues in Trio instead of inside the driver.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio

T = TypeVar("T")


class BridgeClosed(RuntimeError):
    """The asyncio loop is gone; nothing more can be run on it."""


class AsyncioBridge:
    def __init__(self, max_in_flight: int = 10) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="asyncio-bridge", daemon=True)
        self._limit = trio.Semaphore(max_in_flight)
        self._closed = False
        self._thread.start()
        self._ready.wait()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``fn(*args)`` on the asyncio loop; cancellation propagates both ways."""
        if self._closed:
            raise BridgeClosed("asyncio bridge is closed")
        async with self._limit:
            return await self._run_unlimited(fn, *args)

    async def run_unlimited(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Like :meth:`run` without taking a pool slot: for long-lived listeners (pub/sub)."""
        if self._closed:
            raise BridgeClosed("asyncio bridge is closed")
        return await self._run_unlimited(fn, *args)

    async def _run_unlimited(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        box: list[outcome.Outcome[T]] = []
        handle: list[asyncio.Future[T]] = []

        def finished(fut: asyncio.Future[T]) -> None:
            if fut.cancelled():
                box.append(outcome.Error(BridgeClosed("asyncio task was cancelled")))
            else:
                exc = fut.exception()
                box.append(outcome.Error(exc) if exc is not None else outcome.Value(fut.result()))
            token.run_sync_soon(done.set)

        def start() -> None:
            task = asyncio.ensure_future(fn(*args), loop=self._loop)
            handle.append(task)
            task.add_done_callback(finished)

        self._loop.call_soon_threadsafe(start)
        try:
            await done.wait()
        except trio.Cancelled:
            # Unwind the asyncio side before we let Trio's cancellation continue, so a pooled
            # connection is never left mid-query behind our back.
            self._loop.call_soon_threadsafe(lambda: handle[0].cancel() if handle else None)
            with trio.CancelScope(shield=True):
                await done.wait()
            raise
        return box[0].unwrap()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
