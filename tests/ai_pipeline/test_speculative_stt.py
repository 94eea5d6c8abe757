"""Speculative STT: Whisper starts when the caller goes quiet, before the VAD's stop.

The real Silero VAD (``PhoneVADProcessor`` over the shared session) and the real Whisper service
in a pipecat pipeline, fed the speech fixtures 20 ms at a time. The VAD counts samples, not wall
time, so the pauses below are exact: 120 ms is past the 64 ms that count as going quiet and short
of the 200 ms ``stop_secs``; 700 ms is a stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    SystemFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import run_test

from ai_pipeline.agent_config import VadConfig
from ai_pipeline.engines.models import ModelStore
from ai_pipeline.engines.stt import WhisperPackagedSTTService
from ai_pipeline.engines.vad import CallerQuietFrame, PhoneVADProcessor, SharedSileroVADAnalyzer
from ai_pipeline.turnbench import words
from tests.ai_pipeline.memory_link import FRAME_BYTES, RATE_HZ, load_wav_pcm16, silence_ms


def frames(pcm16: bytes) -> list[Frame]:
    return [
        InputAudioRawFrame(pcm16[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0"), RATE_HZ, 1)
        for i in range(0, len(pcm16), FRAME_BYTES)
    ]


def speech_only(pcm16: bytes, floor_dbfs: float = -40.0) -> bytes:
    """The fixture without its quiet lead and tail (20 ms frames under ``floor_dbfs``)."""
    x = np.frombuffer(pcm16, dtype=np.int16).astype(np.float64)
    n = len(x) // (FRAME_BYTES // 2)
    rms = np.sqrt(np.mean(x[: n * FRAME_BYTES // 2].reshape(n, -1) ** 2, axis=1)) / 32768
    loud = np.flatnonzero(20 * np.log10(rms + 1e-12) > floor_dbfs)
    return pcm16[loud[0] * FRAME_BYTES : (loud[-1] + 1) * FRAME_BYTES]


def transcribe_through_vad(
    models: ModelStore, pcm16: bytes
) -> tuple[list[str], dict[str, int], int]:
    """Transcripts, the service's speculation counts, and how many times the caller went quiet."""
    stt = WhisperPackagedSTTService(whisper=models.whisper_window())
    vad = SharedSileroVADAnalyzer(models.silero_session(), VadConfig(), sample_rate_hz=RATE_HZ)
    down: Sequence[Frame] = asyncio.run(
        run_test(Pipeline([PhoneVADProcessor(vad), stt]), frames_to_send=frames(pcm16))
    )[0]
    texts = [f.text for f in down if isinstance(f, TranscriptionFrame)]
    quiet = sum(isinstance(f, CallerQuietFrame) for f in down)
    return texts, stt.speculations, quiet


def test_a_confirmed_stop_uses_the_transcript_started_at_the_quiet(models: ModelStore) -> None:
    pcm16 = silence_ms(300) + load_wav_pcm16("billing_question.wav") + silence_ms(700)
    texts, speculations, quiet = transcribe_through_vad(models, pcm16)
    assert quiet >= 1
    assert speculations["used"] == 1, speculations
    assert [words(t) for t in texts] == [["i", "have", "a", "question", "about", "my", "bill"]]


def test_speech_after_a_short_pause_throws_the_guess_away(models: ModelStore) -> None:
    first = speech_only(load_wav_pcm16("billing_question.wav"))
    second = speech_only(load_wav_pcm16("text_me.wav"))
    pcm16 = silence_ms(300) + first + silence_ms(120) + second + silence_ms(700)
    texts, speculations, _ = transcribe_through_vad(models, pcm16)
    # One transcript with both phrases: the guess made in the pause ("...my bill.") is not it.
    assert len(texts) == 1, texts
    heard = words(texts[0])
    assert "bill" in heard and "details" in heard, texts
    assert speculations["discarded"] >= 1, speculations
    # The final came from a second guess, or (the thrown-away one still decoding: one guess
    # per call at a time) from a decode at the stop.
    assert speculations["used"] <= 1, speculations


@dataclass
class Hold(SystemFrame):
    """Holds the caller's next frames back until ``until`` returns (see :class:`Gate`)."""

    until: Callable[[], Awaitable[None]] = field(default=lambda: asyncio.sleep(0))


class Gate(FrameProcessor):
    """First in the pipeline: at a :class:`Hold` the caller stops in the middle of their pause
    until the test says, however long Whisper takes (the VAD counts samples, not time)."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, Hold):
            await frame.until()
        else:
            await self.push_frame(frame, direction)


async def until(condition: Callable[[], bool], within_s: float = 30.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():  # Whisper's thread makes it true
            await asyncio.sleep(0.01)


def pause_with_guess(
    models: ModelStore, speech: list[bytes], ready: Callable[[PhoneVADProcessor, int], bool]
) -> tuple[Sequence[Frame], PhoneVADProcessor]:
    """Each phrase of ``speech`` then 128 ms of pause (gone quiet, not yet the VAD's 200 ms
    stop), held there until ``ready`` (the VAD, how many phrases so far); 700 ms of silence at
    the end."""
    stt = WhisperPackagedSTTService(whisper=models.whisper_window())
    vad = PhoneVADProcessor(
        SharedSileroVADAnalyzer(models.silero_session(), VadConfig(), sample_rate_hz=RATE_HZ)
    )
    sent: list[Frame] = frames(silence_ms(300))
    for n, phrase in enumerate(speech, 1):
        hold = Hold(lambda n=n: until(lambda: ready(vad, n)))  # type: ignore[misc]
        sent += [*frames(phrase + silence_ms(128)), hold]
    sent += frames(silence_ms(700))
    pipeline = Pipeline([Gate(), vad, stt])
    down: Sequence[Frame] = asyncio.run(run_test(pipeline, frames_to_send=sent))[0]
    return down, vad


def kinds(down: Sequence[Frame]) -> list[str]:
    wanted = (VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame, TranscriptionFrame)
    return [type(f).__name__.removesuffix("Frame") for f in down if isinstance(f, wanted)]


def test_a_complete_sentence_stops_the_speech_before_the_vads_stop(models: ModelStore) -> None:
    billing = speech_only(load_wav_pcm16("billing_question.wav"))
    down, _ = pause_with_guess(models, [billing], lambda vad, n: vad.early_stops == n)
    # Stopped 128 ms into the pause, on the guess; the VAD's own stop later is not a second one.
    assert kinds(down) == ["VADUserStartedSpeaking", "VADUserStoppedSpeaking", "Transcription"]
    texts = [f.text for f in down if isinstance(f, TranscriptionFrame)]
    assert [words(t) for t in texts] == [["i", "have", "a", "question", "about", "my", "bill"]]


def test_an_incomplete_guess_waits_for_the_vads_stop(models: ModelStore) -> None:
    cut = speech_only(load_wav_pcm16("billing_question.wav"))
    cut = cut[: int(len(cut) * 0.75) // FRAME_BYTES * FRAME_BYTES]  # "I have a question about"
    down, vad = pause_with_guess(models, [cut], lambda vad, n: vad.quiet_transcripts == n)
    assert vad.early_stops == 0
    assert kinds(down) == ["VADUserStartedSpeaking", "VADUserStoppedSpeaking", "Transcription"]


def test_speech_after_an_early_stop_is_a_new_start(models: ModelStore) -> None:
    billing = speech_only(load_wav_pcm16("billing_question.wav"))
    text_me = speech_only(load_wav_pcm16("text_me.wav"))
    down, vad = pause_with_guess(models, [billing, text_me], lambda vad, n: vad.early_stops == n)
    assert vad.early_stops == 2
    assert kinds(down) == ["VADUserStartedSpeaking", "VADUserStoppedSpeaking", "Transcription"] * 2
    texts = [words(f.text) for f in down if isinstance(f, TranscriptionFrame)]
    assert texts[1] == ["can", "you", "text", "me", "the", "details"], texts
