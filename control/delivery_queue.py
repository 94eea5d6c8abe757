"""Pending webhook deliveries: one FIFO per destination, retries ordered by the time they are due.

Why: retries used to sleep inside the shared delivery workers (1 + 2 + 4 + 8 s), so one customer's
dead endpoint held the workers and delayed every other customer's deliveries by 11-16 s. Here a
retry is a due time, not a sleeping task: a worker makes one attempt and hands the job back.

Ordering: a destination's events are delivered in the order offered; while its head waits for a
retry, its later events wait behind it (at-least-once, in order per destination), and nobody else
does. Bounds: ``max_jobs`` in all and ``max_per_destination`` each, so a dead endpoint's backlog
drops its own events (counted by the caller) instead of filling the queue for everyone.

Pure: no clocks, no I/O; times are the caller's (``trio.current_time()``).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Attempt(Generic[T]):
    """The head of a destination's queue, taken for one delivery attempt (numbered from 1)."""

    destination: str
    item: T
    number: int


class DeliveryQueue(Generic[T]):
    def __init__(self, max_jobs: int, max_per_destination: int) -> None:
        self.max_jobs = max_jobs
        self.max_per_destination = max_per_destination
        self._queues: dict[str, deque[T]] = {}
        self._attempts: dict[str, int] = {}  # attempts already made on each destination's head
        # (due_s, seq, destination): each idle destination with work appears exactly once
        self._due: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._jobs = 0

    def __len__(self) -> int:
        return self._jobs

    def add(self, destination: str, item: T) -> bool:
        """Queue ``item`` behind the destination's earlier ones; False (not queued) when full."""
        queue = self._queues.get(destination)
        if self._jobs >= self.max_jobs or (queue and len(queue) >= self.max_per_destination):
            return False
        if queue is None:
            queue = self._queues[destination] = deque()
            self._attempts[destination] = 0
            self._schedule(destination, -math.inf)  # new and idle: due now
        queue.append(item)
        self._jobs += 1
        return True

    def next_due_s(self) -> float:
        """When :meth:`take` will next have something (``inf``: nothing queued but in flight)."""
        return self._due[0][0] if self._due else math.inf

    def take(self, now_s: float) -> Attempt[T] | None:
        """The head of a destination that is due by ``now_s``; the destination is out of the
        schedule until :meth:`done` or :meth:`retry`. None when nothing is due."""
        if not self._due or self._due[0][0] > now_s:
            return None
        _, _, destination = heapq.heappop(self._due)
        self._attempts[destination] += 1
        return Attempt(destination, self._queues[destination][0], self._attempts[destination])

    def done(self, attempt: Attempt[T]) -> None:
        """The head is finished with (delivered or given up): the next one is due now."""
        destination = attempt.destination
        queue = self._queues[destination]
        queue.popleft()
        self._jobs -= 1
        self._attempts[destination] = 0
        if queue:
            self._schedule(destination, -math.inf)
        else:
            del self._queues[destination], self._attempts[destination]

    def retry(self, attempt: Attempt[T], at_s: float) -> None:
        """The head failed and is tried again at ``at_s``; the destination waits until then."""
        self._schedule(attempt.destination, at_s)

    def _schedule(self, destination: str, due_s: float) -> None:
        heapq.heappush(self._due, (due_s, next(self._seq), destination))
