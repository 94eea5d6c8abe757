"""When a caller's turn starts and ends: pipecat's turn strategies, chosen for phone calls.

A turn starts when the VAD hears speech or when the caller presses a key; it ends after a
speech timeout once a transcript has arrived. pipecat's default also starts a turn on any
transcript, which misfires with segmented STT at real-time pace: a pause longer than the VAD's
``stop_secs`` ("transfer me to sales, [0.2 s] please") splits one utterance into two STT
segments, the turn may end on the first, and the second's transcript, arriving just as the
reply starts to play, would barge in on the agent's own answer. Speech that the VAD missed is
never transcribed by a segmented STT anyway, so that fallback buys nothing here.
"""

from __future__ import annotations

from pipecat.frames.frames import Frame, InputDTMFFrame
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_start import VADUserTurnStartStrategy
from pipecat.turns.user_start.base_user_turn_start_strategy import BaseUserTurnStartStrategy
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies


class KeypadUserTurnStartStrategy(BaseUserTurnStartStrategy):  # type: ignore[no-untyped-call]
    """A key press starts the caller's turn, as speech does: keys are a deliberate answer.

    The DTMF aggregator then hands the digits on as a transcript, which ends the turn.
    """

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, InputDTMFFrame):
            await self.trigger_user_turn_started()
            return ProcessFrameResult.STOP
        return ProcessFrameResult.CONTINUE


def phone_turn_strategies(user_turn_timeout_secs: float) -> UserTurnStrategies:
    return UserTurnStrategies(
        start=[VADUserTurnStartStrategy(), KeypadUserTurnStartStrategy()],
        stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=user_turn_timeout_secs)],
    )
