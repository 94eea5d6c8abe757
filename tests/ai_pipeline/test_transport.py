"""The link transport: input mapping, barge-in flushes only when audio may be queued, hang-up."""

from __future__ import annotations

import asyncio

from pipecat.frames.frames import (
    InputAudioRawFrame,
    InputDTMFFrame,
    InterruptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.tests.utils import SleepFrame, run_test

from ai_pipeline.engines.models import ModelStore
from ai_pipeline.transport import LinkOutput, LinkSender, frame_from_link
from proto.messages import Audio, Dtmf, Hangup, Interruption, LinkFrame, Mark, Transcript
from tests.ai_pipeline.call_harness import Call, agent_text, run_scenario


def test_frame_from_link_maps_caller_frames() -> None:
    audio = frame_from_link(Audio(b"\x01\x00" * 320, 16000))
    assert isinstance(audio, InputAudioRawFrame)
    assert (audio.sample_rate, audio.num_channels, len(audio.audio)) == (16000, 1, 640)
    dtmf = frame_from_link(Dtmf("#"))
    assert isinstance(dtmf, InputDTMFFrame) and dtmf.button.value == "#"
    assert frame_from_link(Dtmf("A")) is None  # valid on the wire, not on pipecat's keypad
    assert frame_from_link(Mark("m1")) is None


class Sent:
    def __init__(self) -> None:
        self.frames: list[LinkFrame] = []

    async def __call__(self, frame: LinkFrame) -> None:
        self.frames.append(frame)


def tts_audio(ms: int) -> TTSAudioRawFrame:
    return TTSAudioRawFrame(b"\x00\x01" * (16 * ms), 16000, 1)


def test_idle_interruption_is_not_sent_to_the_core() -> None:
    async def main() -> None:
        sent = Sent()
        out = LinkOutput(LinkSender(sent))
        await run_test(out, frames_to_send=[InterruptionFrame()])
        assert sent.frames == []

    asyncio.run(main())


def test_interruption_while_audio_plays_flushes_and_reports_partial_text() -> None:
    async def main() -> None:
        sent = Sent()
        sender = LinkSender(sent)
        out = LinkOutput(sender)
        out.note_text_for_tts("Our opening hours are ")
        out.note_text_for_tts("nine to five.")
        # SleepFrame lets the queued frames through before the (system) interruption jumps in.
        frames = [TTSStartedFrame(), tts_audio(2000), SleepFrame(0.1), InterruptionFrame()]
        await run_test(out, frames_to_send=frames)
        kinds = [type(f) for f in sent.frames]
        assert kinds == [Audio, Interruption, Transcript]
        transcript = sent.frames[2]
        assert transcript == Transcript("agent", "Our opening hours are nine to five.", final=False)
        assert sender.audio_bytes_sent == 64000
        assert out.interruptions_sent == 1

    asyncio.run(main())


def test_spoken_text_is_a_final_transcript() -> None:
    async def main() -> None:
        sent = Sent()
        out = LinkOutput(LinkSender(sent))
        frames = [
            TTSStartedFrame(),
            tts_audio(100),
            TTSTextFrame("Hello there.", "sentence"),
            TTSTextFrame("How can I help?", "sentence"),
            TTSStoppedFrame(),
        ]
        await run_test(out, frames_to_send=frames)
        assert sent.frames[-1] == Transcript("agent", "Hello there. How can I help?", final=True)

    asyncio.run(main())


def test_hangup_without_goodbye_is_immediate_and_sent_once() -> None:
    async def main() -> None:
        sent = Sent()
        out = LinkOutput(LinkSender(sent))
        await run_test(out, frames_to_send=[])
        await out.hang_up_after_speech("done", speech_expected=False)
        await out.hang_up_after_speech("done", speech_expected=False)
        assert sent.frames == [Hangup("done")]

    asyncio.run(main())


def test_first_call_loads_models_off_the_event_loop(models: ModelStore) -> None:
    """A fresh process's first call loads ~300 MB of models; other calls' audio must not stall."""

    async def main() -> None:
        # Warm pipecat's own lazy imports with a call on the shared models, so what is timed
        # below is the model loading of a call on a fresh store.
        warm = Call(models, {"greeting": "Hi."})
        await warm.wait_for(Transcript, agent_text)
        await warm.finish()
        loop = asyncio.get_running_loop()
        worst_gap_s = 0.0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal worst_gap_s
            last = loop.time()
            while not done.is_set():
                await asyncio.sleep(0.02)
                now = loop.time()
                worst_gap_s = max(worst_gap_s, now - last)
                last = now

        tick = asyncio.create_task(ticker())
        call = Call(ModelStore(), {"greeting": "Hi."})  # nothing loaded yet
        await call.wait_for(Transcript, agent_text, within_s=60)
        done.set()
        await tick
        await call.finish()
        # Loading takes seconds; a stall of that size would mean it ran on the loop.
        assert worst_gap_s < 0.5, worst_gap_s

    run_scenario(main)
