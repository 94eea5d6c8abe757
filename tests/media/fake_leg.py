"""A leg that records what the call's leg side sends it, with the Trio clock's time of each send:
for driving the real pacer (media/leg_side.py) on Trio's mock clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import numpy as np
import numpy.typing as npt
import trio

from media.audio import LINK_RATE_HZ
from media.hooks import LegCannotDo
from media.leg import LegEvent
from media.leg_side import LegSide
from media.metrics import MediaMetrics


class RecordingLeg:
    kind = "fake"
    self_paced = False

    def __init__(self, rate_hz: int = LINK_RATE_HZ) -> None:
        self.rate_hz = rate_hz
        self.sent_at: list[float] = []
        self.frames: list[bytes] = []
        # called before each send returns (a test's stall of the leg): frame index -> awaitable
        self.before_send: Callable[[int], Awaitable[None]] | None = None

    async def receive(self) -> LegEvent:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send_audio(self, pcm16: bytes) -> None:
        self.sent_at.append(trio.current_time())
        self.frames.append(pcm16)
        if self.before_send is not None:
            await self.before_send(len(self.frames) - 1)

    async def clear(self) -> None:
        pass

    async def send_mark(self, name: str) -> None:
        pass

    async def send_dtmf(self, digits: str) -> None:
        raise LegCannotDo("in-band only, like AudioSocket")

    async def hangup(self, reason: str) -> None:
        pass

    def samples(self) -> npt.NDArray[np.int16]:
        return np.frombuffer(b"".join(self.frames), dtype="<i2")


class NowaitRecordingLeg(RecordingLeg):
    """The same, sending like AudioSocket (:class:`media.leg_side.NowaitAudio`): its frames are
    paced on the shared tick (media/tick.py), not by the pacer task's sleeps. A test's stall
    (``before_send``) is a socket that did not take the whole frame."""

    def __init__(self, rate_hz: int = LINK_RATE_HZ) -> None:
        super().__init__(rate_hz)
        self._stalled: int | None = None

    def send_audio_nowait(self, pcm16: bytes) -> bool:
        self.sent_at.append(trio.current_time())
        self.frames.append(pcm16)
        if self.before_send is None:
            return True
        self._stalled = len(self.frames) - 1
        return False

    async def flush_audio(self) -> None:
        if self._stalled is not None and self.before_send is not None:
            await self.before_send(self._stalled)
        self._stalled = None


LEGS = [RecordingLeg, NowaitRecordingLeg]
"""Both ways a call's frames are paced: a pacer task per call, and the shared tick."""


def leg_side(leg: RecordingLeg, playout_max_ms: int = 60_000, hold_s: float = 0.0) -> LegSide:
    end = lambda cause, reason: None  # noqa: E731
    return LegSide(leg, "c1", playout_max_ms, MediaMetrics(), end, hold_s=hold_s)


def numbered_frame(k: int, rate_hz: int = LINK_RATE_HZ) -> bytes:
    """A 20 ms frame whose every sample is ``k``: which frame went out is read back from it."""
    return np.full(rate_hz // 50, k, dtype="<i2").tobytes()
