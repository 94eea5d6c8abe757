"""When a caller's turn starts and ends: pipecat turn strategies, chosen for phone calls.

A turn starts when the VAD hears speech or when the caller presses a key. It ends on what the
caller said (:mod:`ai_pipeline.end_of_turn`), not after a fixed wait: a complete sentence ends
it as soon as its transcript is there (the VAD stops early on one:
:class:`~ai_pipeline.engines.vad.PhoneVADProcessor`), an unsure ending after the agent's
``user_turn_timeout_secs``, an ending that leads on ("...talk to") after twice that, each
counted from the VAD's stop and cut short by more speech.

Answering that soon invites the caller's courtesy tail ("Transfer me to sales. [pause]
Please.") to barge in on the answer and leave the turn unanswered. So for
:data:`TAIL_GRACE_S` after a turn ended, speech starts no turn by itself: its transcript
decides, and a courtesy tail ("please", "thank you") is dropped while the answer plays on.

pipecat's default also starts a turn on any transcript, which misfires with segmented STT at
real-time pace: a split utterance's second transcript, arriving as the reply starts to play,
would barge in on it. Speech that the VAD missed is never transcribed by a segmented STT anyway,
so that fallback buys nothing here.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from pipecat.frames.frames import (
    Frame,
    InputDTMFFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_start.base_user_turn_start_strategy import BaseUserTurnStartStrategy
from pipecat.turns.user_stop.base_user_turn_stop_strategy import BaseUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from ai_pipeline.end_of_turn import ending, is_courtesy_tail, wait_after_stop_secs

TAIL_GRACE_S = 1.0
"""After a turn ends, speech this soon waits for its words before it may cut the answer off
(the tails seen: 0.25-0.75 s after the turn ended)."""

Sleep = Callable[[float], Awaitable[None]]


class KeypadUserTurnStartStrategy(BaseUserTurnStartStrategy):  # type: ignore[no-untyped-call]
    """A key press starts the caller's turn, as speech does: keys are a deliberate answer.

    The DTMF aggregator then hands the digits on as a transcript, which ends the turn.
    """

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, InputDTMFFrame):
            await self.trigger_user_turn_started()
            return ProcessFrameResult.STOP
        return ProcessFrameResult.CONTINUE


class SpeechUserTurnStartStrategy(BaseUserTurnStartStrategy):  # type: ignore[no-untyped-call]
    """The VAD's start starts the turn, except just after a turn ended (see the module doc)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._grace_until = -math.inf
        self._held = False
        self.tails_dropped = 0

    async def handle_user_turn_started(self) -> None:
        self._held = False

    async def handle_user_turn_stopped(self) -> None:
        self._grace_until = self._clock() + TAIL_GRACE_S

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, VADUserStartedSpeakingFrame):
            if self._clock() < self._grace_until:
                self._held = True  # its transcript decides
            else:
                await self.trigger_user_turn_started()
            return ProcessFrameResult.STOP
        if isinstance(frame, TranscriptionFrame) and self._held:
            self._held = False
            if is_courtesy_tail(frame.text):
                self.tails_dropped += 1
                await self.trigger_reset_aggregation()  # type: ignore[no-untyped-call]  # the answer stands; forget the tail
            else:
                await self.trigger_user_turn_started()
            return ProcessFrameResult.STOP
        return ProcessFrameResult.CONTINUE


class TranscriptUserTurnStopStrategy(BaseUserTurnStopStrategy):  # type: ignore[no-untyped-call]
    """Ends the turn once the VAD has stopped and the transcript's ending allows (module doc)."""

    def __init__(self, user_turn_timeout_secs: float, *, sleep: Sleep = asyncio.sleep) -> None:
        super().__init__()
        self._timeout_secs = user_turn_timeout_secs
        self._sleep = sleep
        self._text = ""
        self._vad_speaking = False
        self._timer: asyncio.Task[None] | None = None

    async def handle_user_turn_started(self) -> None:
        await self._clear()

    async def handle_user_turn_stopped(self) -> None:
        await self._clear()

    async def cleanup(self) -> None:
        await super().cleanup()  # type: ignore[no-untyped-call]
        await self._cancel_timer()

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._vad_speaking = True
            await self._cancel_timer()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._vad_speaking = False
            await self._decide()
        elif isinstance(frame, TranscriptionFrame) and frame.text.strip():
            self._text = f"{self._text} {frame.text.strip()}".strip()
            if not self._vad_speaking:
                await self._decide()
        return ProcessFrameResult.CONTINUE

    async def _decide(self) -> None:
        await self._cancel_timer()
        if not self._text:
            return  # the transcript follows the stop; it decides then
        wait_s = wait_after_stop_secs(ending(self._text), self._timeout_secs)
        if wait_s <= 0:
            await self.trigger_user_turn_stopped()
        else:
            self._timer = self.task_manager.create_task(self._stop_after(wait_s), "turn-wait")

    async def _stop_after(self, wait_s: float) -> None:
        await self._sleep(wait_s)
        self._timer = None
        await self.trigger_user_turn_stopped()

    async def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            await self.task_manager.cancel_task(timer)

    async def _clear(self) -> None:
        self._text = ""
        await self._cancel_timer()


def phone_turn_strategies(user_turn_timeout_secs: float) -> UserTurnStrategies:
    return UserTurnStrategies(
        start=[SpeechUserTurnStartStrategy(), KeypadUserTurnStartStrategy()],
        stop=[TranscriptUserTurnStopStrategy(user_turn_timeout_secs)],
    )
