"""One timer for every call's outbound frames, and one reader for every call's inbound frames,
in a Trio run (issue 15: work batched across calls instead of tasks per call).

**Reading.** A leg reader per call waited for its socket once per frame: a task switch plus
Trio's registration of the socket with epoll (``epoll_ctl``) each time. :class:`Readers` keeps
every polled leg's socket registered once in an epoll set of its own; one task waits on that set
and, when it wakes, reads every socket that has data and hands each call's frames on at once
(caller audio to the peer; any other event to the call's reader task, which keeps them in order).

**Pacing.** The per-call pacer slept once per frame: with N calls, 50 x N timer wake-ups a
second, each a task switch and Trio's costliest wake-up (a sleeper is woken by cancelling its
scope). Here a call's leg side sends a frame itself whenever its slot has already come (the
moment its audio arrives, in the task that delivered it: the agent link's reader, the bridge's
tick), and only a frame that is early asks this timer for its slot. One system task sleeps
until the earliest slot asked for and then serves every call whose slot falls within
:data:`TICK_SLACK_S` of it: at most one wake-up per slack interval for the whole process,
whatever the number of calls.

**Resampling.** What one wake-up of the reader (or of the multiplexed agent link's reader,
:mod:`media.agent_mux`) hands on, it hands on inside :func:`batching`: a call's leg side adds its
chunk to the open :class:`media.resample_batch.ResampleBatch` instead of resampling it alone, and
when the wake-up's callbacks are done every call's chunk is resampled in one numpy pass per rate
pair and handed on in turn. Nothing else runs in between (the wake-up never checkpoints), so no
call sees its audio reordered against anything it does.

``CALLBRIDGE_MEDIA_TICK=0`` in the environment turns the reader and the timer off (every call
reads and paces in tasks of its own, as before), ``CALLBRIDGE_MEDIA_BATCH=0`` the batched
resampling; benchmarks compare them in one run. Legs that can (AudioSocket today:
:class:`media.leg_side.NowaitAudio`, :class:`media.leg_side.PolledLeg`) use them.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import select
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import trio

from media.resample_batch import ResampleBatch

log = logging.getLogger(__name__)

TICK_SLACK_S = 0.001
"""A frame due within this much of the wake-up goes out in it (at most this early): with calls
at every phase of the 20 ms grid, the timer wakes at most 1000 times a second, not 50 x N."""
ENV_SWITCH = "CALLBRIDGE_MEDIA_TICK"
BATCH_SWITCH = "CALLBRIDGE_MEDIA_BATCH"


class Paced(Protocol):
    def on_tick(self, slot: float) -> None:
        """The slot this one asked for (:meth:`Tick.at`) has come. Must not raise."""


class Tick:
    """Wakes each :class:`Paced` at the slot it asked for, many in one wake-up."""

    def __init__(self, slack_s: float = TICK_SLACK_S) -> None:
        self.slack_s = slack_s
        self.wakeups = 0  # for tests and benchmarks: how often the timer ran
        self._heap: list[tuple[float, int, Paced]] = []
        self._order = itertools.count()  # ties in time: first asked, first served
        self._sleep: trio.CancelScope | None = None

    def at(self, slot: float, who: Paced) -> None:
        """Call ``who.on_tick(slot)`` once ``slot`` (Trio clock) has come, or just before."""
        heapq.heappush(self._heap, (slot, next(self._order), who))
        if self._sleep is not None and slot < self._sleep.deadline:
            self._sleep.deadline = slot

    async def run(self) -> None:
        while True:
            with trio.CancelScope(deadline=self._heap[0][0] if self._heap else math.inf) as sleep:
                self._sleep = sleep
                await trio.sleep_forever()
            self._sleep = None
            self.wakeups += 1
            horizon = trio.current_time() + self.slack_s
            while self._heap and self._heap[0][0] <= horizon:
                slot, _, who = heapq.heappop(self._heap)
                try:
                    who.on_tick(slot)
                except Exception:  # one call's bug must not stop every call's audio
                    log.exception("paced frame failed")


class Readers:
    """Calls ``on_readable()`` of every registered socket that has data, many in one wake-up."""

    def __init__(self) -> None:
        self.wakeups = 0  # for tests and benchmarks: how often the reader ran
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callable[[], None]] = {}

    def add(self, fd: int, on_readable: Callable[[], None]) -> None:
        """Until :meth:`remove`, which must come before ``fd`` is closed. ``on_readable`` must
        not raise; it need not drain the socket (what is left is there next time)."""
        self._callbacks[fd] = on_readable
        self._epoll.register(fd, select.EPOLLIN)

    def remove(self, fd: int) -> None:
        """Idempotent."""
        if self._callbacks.pop(fd, None) is not None:
            with contextlib.suppress(OSError):  # already closed: the kernel dropped it
                self._epoll.unregister(fd)

    async def run(self) -> None:
        try:
            while True:
                await trio.lowlevel.wait_readable(self._epoll.fileno())
                self.wakeups += 1
                with batching():
                    self._read_ready()
        finally:  # the Trio run is ending (a test's run: many per process)
            trio.lowlevel.notify_closing(self._epoll.fileno())
            self._epoll.close()

    def _read_ready(self) -> None:
        for fd, _ in self._epoll.poll(0):
            on_readable = self._callbacks.get(fd)
            if on_readable is None:
                continue
            try:
                on_readable()
            except Exception:  # one call's bug must not stop every call's audio
                log.exception("polled read failed")
                self.remove(fd)


_R = TypeVar("_R", bound="_Runs")
_TICK: trio.lowlevel.RunVar[Tick | None] = trio.lowlevel.RunVar("callbridge_tick")
_READERS: trio.lowlevel.RunVar[Readers | None] = trio.lowlevel.RunVar("callbridge_readers")
_BATCH: trio.lowlevel.RunVar[ResampleBatch | None] = trio.lowlevel.RunVar("callbridge_batch")


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1") != "0"


def open_batch() -> ResampleBatch | None:
    """The batch of the wake-up running now (see :func:`batching`); None outside one, where a
    chunk is resampled at once."""
    return _BATCH.get(None)


class batching:  # (a context manager: named like contextlib's)
    """``with batching(): ...``: chunks added to :func:`open_batch` inside are resampled
    together on the way out, and handed on, before anything else runs. The body must not
    checkpoint (another task would find the batch open). Nested: the outer one runs it."""

    __slots__ = ("_batch",)

    def __enter__(self) -> None:
        self._batch: ResampleBatch | None = None
        if _BATCH.get(None) is None and os.environ.get(BATCH_SWITCH, "1") != "0":
            self._batch = ResampleBatch()
            _BATCH.set(self._batch)

    def __exit__(self, *exc_info: object) -> None:
        batch = self._batch
        if batch is not None:
            _BATCH.set(None)
            batch.run()


def current_tick() -> Tick:
    """This Trio run's timer, started on first use as a system task (it outlives any call)."""
    return _run_wide(_TICK, Tick, "media tick")


def current_readers() -> Readers:
    """This Trio run's shared reader, started on first use as a system task."""
    return _run_wide(_READERS, Readers, "media readers")


class _Runs(Protocol):
    async def run(self) -> None: ...


def _run_wide(var: trio.lowlevel.RunVar[Any], make: Callable[[], _R], name: str) -> _R:
    found: _R | None = var.get(None)
    if found is None:
        found = make()
        var.set(found)
        trio.lowlevel.spawn_system_task(found.run, name=name)
    return found
