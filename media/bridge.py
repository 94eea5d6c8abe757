"""A mixing bridge on the Trio clock: one task ticking :class:`media.bridge_core.BridgeCore`
every 20 ms.

Thin on purpose (style 2): the tick is pure; this module only keeps time. Ticks are slots of a
fixed grid (``start + k * 20 ms``); a task that wakes late runs the slots it missed at once (each
takes one frame from every queue, so nobody's audio piles up), and after more than
``CATCHUP_S`` behind it starts a new grid instead of bursting. With nobody in the bridge the task
sleeps until somebody joins. Events (talking, key presses, a participant left) go to
``on_event``, which must not block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from media.audio import FRAME_MS
from media.bridge_core import PORT_QUEUE_MS, BridgeCore, BridgeEvent, BridgePort, Deliver, Left

log = logging.getLogger(__name__)

FRAME_S = FRAME_MS / 1000
CATCHUP_S = 0.1  # five ticks: past this, missed ticks are skipped (a burst would be heard)


class Bridge:
    """Participants join with a ``deliver`` for their mix and get a port for their audio."""

    def __init__(
        self,
        bridge_id: str,
        tones: bool = True,
        max_participants: int | None = None,
        on_event: Callable[[BridgeEvent], None] | None = None,
    ) -> None:
        self.bridge_id = bridge_id
        self.core = BridgeCore(tones, max_participants, clock=trio.current_time)
        self.ticks = 0
        self.skipped_ticks = 0
        self._on_event = on_event
        self._scope = trio.CancelScope()
        self._someone = trio.Event()
        self.ended = trio.Event()

    @property
    def participants(self) -> tuple[str, ...]:
        return tuple(self.core.ports)

    def join(
        self,
        participant_id: str,
        deliver: Deliver,
        queue_ms: int = PORT_QUEUE_MS,
        live: bool = True,
    ) -> BridgePort:
        """Raises :class:`~media.bridge_core.BridgeFull` or ``BridgeEnded``. ``queue_ms``
        and ``live``: how much of its audio may wait, and whether a standing backlog is the
        leg's clock running fast (trimmed) or an agent's speech arriving in bursts (kept)."""
        port = self.core.join(participant_id, deliver, queue_ms, live)
        self._someone.set()
        return port

    def leave(self, participant_id: str) -> None:
        if self.core.leave(participant_id) is not None:
            self.report_left(participant_id)

    def report_left(self, participant_id: str) -> None:
        """Tell the owner ``participant_id`` is gone (also one that was expected and never
        came: a call that ended while its agent was still talking)."""
        if self._on_event is not None:
            self._on_event(Left(participant_id))

    def close(self) -> None:
        """End the bridge: nobody can join; the task returns. (Participants still in it hear
        silence: taking them out is the owner's, who decides where each one goes.)"""
        self.core.ended = True
        self._scope.cancel()
        self.ended.set()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self._scope:
            task_status.started()
            while True:
                if not self.core.mixer.ids:
                    self._someone = trio.Event()
                    await self._someone.wait()
                await self._tick_for(trio.current_time())

    async def _tick_for(self, start: float) -> None:
        """Tick on a grid anchored at ``start`` until the bridge empties."""
        next_tick = start
        while self.core.mixer.ids:
            await trio.sleep_until(next_tick)
            now = trio.current_time()
            if now - next_tick > CATCHUP_S:
                missed = int((now - next_tick) / FRAME_S)
                self.skipped_ticks += missed
                next_tick += missed * FRAME_S
            while next_tick <= now and self.core.mixer.ids:
                self._tick()
                next_tick += FRAME_S

    def _tick(self) -> None:
        self.ticks += 1
        for event in self.core.tick():
            if self._on_event is not None:
                self._on_event(event)
