"""Turn-taking at real-time pace: a caller's short pause must not make the agent cut itself off.

"Transfer me to sales, [pause] please": a pause longer than the VAD's 0.2 s ``stop_secs``
splits the utterance into two STT segments. The turn can end on the first while Whisper is still
decoding the second, and the agent starts its reply; the second transcript then arrives during
the reply. pipecat's default turn strategies start a new turn on any transcript, which interrupts
the agent's own answer (seen through the media core at real-time pace). The caller's audio is fed
in real time here, not at the suite's usual 2x, so the pause is as long as the caller made it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pipecat.clocks.system_clock import SystemClock
from pipecat.frames.frames import (
    Frame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.turns.user_turn_controller import UserTurnController
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.utils.asyncio.task_manager import TaskManager

from ai_pipeline.engines.models import ModelStore
from ai_pipeline.turns import (
    TAIL_GRACE_S,
    SpeechUserTurnStartStrategy,
    TranscriptUserTurnStopStrategy,
)
from proto.messages import Audio, FunctionCall, Interruption, Transcript
from tests.ai_pipeline.call_harness import Call, agent_text, answer_transferred, run_scenario
from tests.ai_pipeline.memory_link import (
    RATE_HZ,
    MemoryLink,
    load_wav_pcm16,
    play,
    silence_ms,
)

PAUSE_AT_S = 1.64  # the middle of the pause between "sales" and "please" in the fixture


def sales_pause_please(extra_pause_ms: int) -> bytes:
    pcm16 = load_wav_pcm16("transfer_sales.wav")
    cut = int(PAUSE_AT_S * RATE_HZ) * 2
    return pcm16[:cut] + silence_ms(extra_pause_ms) + pcm16[cut:]


def test_the_tail_of_a_split_utterance_does_not_barge_in_on_the_reply(models: ModelStore) -> None:
    async def main() -> None:
        call = Call(models, {"greeting": ""}, answer_transferred)
        pcm16 = silence_ms(300) + sales_pause_please(300) + silence_ms(5000)
        feeder = asyncio.create_task(play(call.link, pcm16, speed=1.0))
        i_call, fc = await call.wait_for(FunctionCall, within_s=30)
        assert fc.arguments == {"department": "sales"}
        _, reply = await call.wait_for(Transcript, agent_text, within_s=30, after=i_call)
        await feeder  # the whole utterance and 5 s of silence after it have been heard
        # The utterance was heard as two segments ("...to sales." and "Please.")...
        caller = [f.text for f in call.frames if isinstance(f, Transcript) and f.role == "caller"]
        assert len(caller) == 2 and "please" in caller[1].lower(), caller
        # ...and the second did not start a turn that cut the reply short: it was spoken whole.
        assert reply.final and reply.text == "Okay, I'm connecting you to sales now."
        first_audio = next(i for i, f in enumerate(call.frames) if isinstance(f, Audio))
        assert not any(isinstance(f, Interruption) for f in call.frames[first_audio:])
        await call.finish()

    run_scenario(main)


def test_the_caller_keeps_real_time_when_the_loop_is_late() -> None:
    """The scenario above rests on the fed caller keeping real time: its pause (0.5 s, VAD start
    of "please" included) is shorter than the turn timeout (0.6 s), so a caller that falls
    behind the wall clock turns it into a pause that ends the turn. Here every loop iteration
    blocks for 15 ms, so every wake-up is late; 1 s of audio must still take about 1 s, not a
    frame's lateness more per frame (it took 1.5 to 3 s)."""

    async def main() -> float:
        async def busy_loop() -> None:
            while True:
                time.sleep(0.015)  # blocks the loop, as a loaded machine's other work does
                await asyncio.sleep(0)

        busy = asyncio.create_task(busy_loop())
        started_s = time.monotonic()
        await play(MemoryLink(), silence_ms(1000), speed=1.0)
        elapsed_s = time.monotonic() - started_s
        busy.cancel()
        return elapsed_s

    elapsed_s = asyncio.run(main())
    assert elapsed_s < 1.25, f"1 s of audio took {elapsed_s:.2f} s to feed"


class Turns:
    """pipecat's real turn controller over the phone strategies, its time in the test's hands:
    ``now`` is the start strategy's clock; a stop waiting for more speech blocks in ``sleep``
    until the test lets it go (``waits`` says how long it asked for)."""

    def __init__(self, timeout_secs: float = 0.6) -> None:
        self.now = 100.0
        self.waits: list[float] = []
        self.events: list[str] = []
        self.release = asyncio.Event()
        self.start = SpeechUserTurnStartStrategy(clock=lambda: self.now)
        stop = TranscriptUserTurnStopStrategy(timeout_secs, sleep=self._sleep)
        self.controller = UserTurnController(
            user_turn_strategies=UserTurnStrategies(start=[self.start], stop=[stop])
        )

    async def _sleep(self, secs: float) -> None:
        self.waits.append(secs)
        await self.release.wait()

    async def setup(self) -> None:
        for name in ("on_user_turn_started", "on_user_turn_stopped", "on_reset_aggregation"):

            async def note(*_: object, name: str = name) -> None:
                self.events.append(name.removeprefix("on_"))

            self.controller.add_event_handler(name, note)
        task_manager = TaskManager(loop=asyncio.get_running_loop())
        clock = SystemClock()  # type: ignore[no-untyped-call]
        no_worker: Any = None  # the controller never asks for one
        await self.controller.setup(FrameProcessorSetup(clock, task_manager, no_worker))

    async def feed(self, *frames: Frame) -> None:
        for frame in frames:
            await self.controller.process_frame(frame)
        for _ in range(5):  # let a released wait finish
            await asyncio.sleep(0)

    async def say(self, text: str) -> None:
        await self.feed(
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            TranscriptionFrame(text, "caller", "now"),
        )


def run_turns(scenario: Callable[[Turns], Awaitable[None]]) -> None:
    async def main() -> None:
        turns = Turns(timeout_secs=0.6)
        await turns.setup()
        await scenario(turns)

    asyncio.run(main())


def test_a_complete_sentence_ends_the_turn_at_once() -> None:
    async def main(turns: Turns) -> None:
        await turns.say("What time are you open tomorrow?")
        assert turns.events == ["user_turn_started", "user_turn_stopped"]
        assert turns.waits == []

    run_turns(main)


def test_an_ending_that_leads_on_waits_longer_and_more_speech_continues_the_turn() -> None:
    async def main(turns: Turns) -> None:
        await turns.say("I'd like to talk to")
        assert turns.events == ["user_turn_started"]  # still the caller's turn
        assert turns.waits == [1.2]
        await turns.say("sales.")  # they go on before the wait is over: one turn
        assert turns.events == ["user_turn_started", "user_turn_stopped"]
        turns.release.set()  # the cancelled wait does not end a second turn
        await turns.feed()
        assert turns.events == ["user_turn_started", "user_turn_stopped"]

    run_turns(main)


def test_an_unsure_ending_waits_the_agents_timeout() -> None:
    async def main(turns: Turns) -> None:
        await turns.say("transfer me to sales")
        assert turns.waits == [0.6] and turns.events == ["user_turn_started"]
        turns.release.set()
        await turns.feed()
        assert turns.events == ["user_turn_started", "user_turn_stopped"]

    run_turns(main)


def test_a_courtesy_tail_just_after_the_turn_does_not_start_another() -> None:
    async def main(turns: Turns) -> None:
        await turns.say("Transfer me to sales.")
        turns.now += TAIL_GRACE_S / 2
        await turns.say("Please.")  # no turn, no barge-in; its words are dropped
        assert turns.events == ["user_turn_started", "user_turn_stopped", "reset_aggregation"]
        assert turns.start.tails_dropped == 1

    run_turns(main)


def test_words_that_say_something_start_a_turn_even_just_after_one() -> None:
    async def main(turns: Turns) -> None:
        await turns.say("Transfer me to sales.")
        turns.now += TAIL_GRACE_S / 2
        await turns.say("No, billing.")  # the turn starts on its words, not on the VAD
        assert turns.events == ["user_turn_started", "user_turn_stopped"] * 2

    run_turns(main)


def test_speech_after_the_grace_starts_a_turn_on_the_vad() -> None:
    async def main(turns: Turns) -> None:
        await turns.say("Transfer me to sales.")
        turns.now += TAIL_GRACE_S * 2
        await turns.feed(VADUserStartedSpeakingFrame())  # a barge-in, at once
        assert turns.events == ["user_turn_started", "user_turn_stopped", "user_turn_started"]

    run_turns(main)
