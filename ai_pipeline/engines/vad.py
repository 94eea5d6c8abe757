"""Silero VAD with one ONNX session shared by every call in the process.

pipecat's ``SileroVADAnalyzer`` opens its own ``InferenceSession`` per instance (~11 MB and a
thread per call). ``InferenceSession.run`` is thread-safe; the recurrent state and context stay
in the per-call :class:`SileroOnnxModel`.

It also runs inline on the event loop instead of handing every 20 ms chunk to a per-call
worker thread. ``python -m bench.probes.silero_sessions --calls 50`` measured, per 20 ms chunk
per call at 50 calls: pipecat's stock analyzers 584-590 us of CPU, separate sessions inline
322-371, one shared session through the thread hand-off 324-374, shared and inline 167-240
(``docs/measurements.md``).

It also says when the caller *goes quiet*, before the VAD's ``stop_secs`` have passed
(:class:`CallerQuietFrame`), and when they speak again before then (:class:`CallerResumedFrame`),
so that the STT can start on the utterance while the VAD still waits to be sure it ended.

And it ends the caller's speech early when that transcript, ready while the caller is still
quiet, is a complete sentence (:mod:`ai_pipeline.end_of_turn`): the stop comes ~0.1 s into the
pause instead of after ``stop_secs``. Speech after such an early stop is a new start.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pipecat.audio.utils import exp_smoothing
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState
from pipecat.audio.volume import VOLUME_WINDOW_SECS
from pipecat.frames.frames import (
    Frame,
    SystemFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from ai_pipeline.agent_config import VadConfig
from ai_pipeline.end_of_turn import Ending, ending

if TYPE_CHECKING:
    import onnxruntime  # type: ignore[import-untyped]


SILENT_PEAK = 3
"""Samples no louder than this (-80 dBFS) are a silent line (digital silence: a muted or
held phone, silence suppression): 400 ms of them measure below BS.1770's absolute gate
(-70 LUFS) even as a square wave at the top of the band, so pipecat's volume reads exactly 0,
and once the smoothed volume is under ``min_volume`` no Silero score can make it speech. The
listening call then costs neither measurement (:meth:`SharedSileroVADAnalyzer.voice_confidence`)."""

QUIET_WINDOWS = 2
"""VAD windows (32 ms each at 16 kHz) of quiet after speech before the caller counts as gone
quiet: one low window is often the dip inside a word; the default ``stop_secs`` is 6 windows."""


@dataclass
class CallerQuietFrame(SystemFrame):
    """The caller went quiet after speech; the VAD has not yet decided that speech stopped."""


@dataclass
class CallerResumedFrame(SystemFrame):
    """The caller spoke again after a :class:`CallerQuietFrame`, before the VAD's stop."""


@dataclass
class QuietTranscriptFrame(SystemFrame):
    """Upstream from the STT: what the caller said up to their going quiet, ready while the
    VAD still waits for its stop (``confident``: Whisper was sure of the words)."""

    text: str = ""
    confident: bool = True


QuietHook = Callable[[bool], Awaitable[None]]
"""Called with True when the caller goes quiet, False when they resume before the stop."""


def _per_call_model(session: onnxruntime.InferenceSession) -> SileroOnnxModel:
    # SileroOnnxModel.__init__ would open a session; everything else about it is per-call state.
    model = SileroOnnxModel.__new__(SileroOnnxModel)
    model.session = session
    model.sample_rates = [8000, 16000]
    model.reset_states()  # type: ignore[no-untyped-call]
    return model


class SharedSileroVADAnalyzer(SileroVADAnalyzer):
    """``SileroVADAnalyzer`` over a shared session (see the module docstring)."""

    def __init__(
        self,
        session: onnxruntime.InferenceSession,
        vad: VadConfig,
        *,
        sample_rate_hz: int | None = None,
    ) -> None:
        params = VADParams(
            confidence=vad.confidence,
            start_secs=vad.start_secs,
            stop_secs=vad.stop_secs,
            min_volume=vad.min_volume,
        )
        # Skip SileroVADAnalyzer.__init__ (it loads a model); set up what it would have set.
        VADAnalyzer.__init__(self, sample_rate=sample_rate_hz, params=params)
        self._model = _per_call_model(session)
        self._windows_since_reset = 0
        self._low_confidence_windows = 0
        self.on_quiet: QuietHook | None = None
        self._quiet = False
        self._silent_bytes = 0  # the trailing run of silent-line samples, in bytes

    def _get_smoothed_volume(self, audio: bytes) -> float:
        """pipecat's, without measuring a silent line: its BS.1770 loudness over the last 400 ms
        (~0.1 ms of CPU per window) is 0 when all of those samples are within
        :data:`SILENT_PEAK`, and the smoothing then goes on from 0."""
        self._volume_tracker.update(audio, self.sample_rate)
        self._silent_bytes = self.silent_run_after(audio, self._silent_bytes)
        raw = 0.0 if self.line_silent(self._silent_bytes) else self._volume_tracker.volume
        return exp_smoothing(raw, self._prev_volume, self._smoothing_factor)

    @staticmethod
    def silent_run_after(window: bytes, run_bytes: int) -> int:
        """The silent line's run, in bytes, once ``window`` follows a run of ``run_bytes``."""
        samples = np.frombuffer(window, dtype=np.int16)
        loud = not samples.size or int(np.abs(samples, dtype=np.int32).max()) > SILENT_PEAK
        return 0 if loud else run_bytes + len(window)

    def line_silent(self, run_bytes: int) -> bool:
        """The whole of pipecat's volume window (400 ms) is silent line."""
        return run_bytes >= math.ceil(VOLUME_WINDOW_SECS * self.sample_rate) * 2

    def volume_bars_speech(self, prev_volume: float) -> bool:
        """On a silent line the smoothed volume is ``prev_volume`` decaying toward 0: once under
        ``min_volume`` the window is not speech whatever Silero would score it."""
        smoothed = exp_smoothing(0.0, prev_volume, self._smoothing_factor)
        return smoothed < self._params.min_volume

    def voice_confidence(self, buffer: bytes) -> float:
        """Silero's score, except on a silent line where the volume rules speech out: Silero is
        not run (~0.1 ms per window), its state rests, and the score is 0."""
        silent = self.line_silent(self.silent_run_after(buffer, self._silent_bytes))
        if silent and self.volume_bars_speech(self._prev_volume):
            self._maybe_reset_model(0.0)
            return 0.0
        confidence: float = super().voice_confidence(buffer)
        return confidence

    @property
    def quiet(self) -> bool:
        """The caller has gone quiet after speech, and the VAD has not yet said it stopped."""
        return self._quiet

    async def analyze_audio(self, buffer: bytes) -> VADState:
        """Inline: cheaper than the base class's thread hand-off per chunk (see module doc)."""
        state: VADState = self._run_analyzer(buffer)
        quiet = state == VADState.STOPPING and self._vad_stopping_count >= QUIET_WINDOWS
        if state == VADState.SPEAKING and self._quiet:
            self._quiet = False
            if self.on_quiet is not None:
                await self.on_quiet(False)
        elif quiet and not self._quiet:
            self._quiet = True
            if self.on_quiet is not None:
                await self.on_quiet(True)
        elif state == VADState.QUIET:
            self._quiet = False  # the stop confirmed it: VADUserStoppedSpeakingFrame follows
        return state


class PhoneVADProcessor(VADProcessor):
    """pipecat's ``VADProcessor`` that also pushes :class:`CallerQuietFrame` and
    :class:`CallerResumedFrame` downstream (to the STT), and stops the caller's speech early on a
    complete :class:`QuietTranscriptFrame` (see the module docstring)."""

    def __init__(self, vad_analyzer: SharedSileroVADAnalyzer) -> None:
        super().__init__(vad_analyzer=vad_analyzer)
        self._analyzer = vad_analyzer
        vad_analyzer.on_quiet = self._quiet_changed
        self._stopped_early = False
        self.quiet_transcripts = 0
        self.early_stops = 0
        """How many guesses reached it, and how many stopped the speech (tests read them)."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, QuietTranscriptFrame):  # for this processor only
            await FrameProcessor.process_frame(self, frame, direction)
            await self._maybe_stop_early(frame)
            return
        await super().process_frame(frame, direction)

    async def _maybe_stop_early(self, said: QuietTranscriptFrame) -> None:
        self.quiet_transcripts += 1
        if not self._analyzer.quiet or self._stopped_early or not said.confident:
            return
        if ending(said.text) is not Ending.COMPLETE:
            return
        self._stopped_early = True
        self.early_stops += 1
        await super().broadcast_frame(
            VADUserStoppedSpeakingFrame, stop_secs=self._analyzer.params.stop_secs
        )

    async def broadcast_frame(self, frame_cls: type[Frame], **kwargs: object) -> None:
        if frame_cls is VADUserStoppedSpeakingFrame and self._stopped_early:
            self._stopped_early = False  # the VAD's own stop, already told
            return
        await super().broadcast_frame(frame_cls, **kwargs)

    async def _quiet_changed(self, quiet: bool) -> None:
        if not quiet and self._stopped_early:  # speech again after an early stop: a new start
            self._stopped_early = False
            await super().broadcast_frame(
                VADUserStartedSpeakingFrame, start_secs=self._analyzer.params.start_secs
            )
            return
        await self.push_frame(CallerQuietFrame() if quiet else CallerResumedFrame())
