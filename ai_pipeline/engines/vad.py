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

Silero is run only where its score can matter. pipecat's VAD calls a window speech when Silero's
confidence reaches ``confidence`` *and* the smoothed volume reaches ``min_volume``; the volume is
measured first here (the same values as pipecat's), and a window under ``min_volume`` is not
scored: on a quiet line (digital silence, a mu-law line's floor noise) Silero is not run at all.
When the volume comes back, Silero first catches up on the windows it skipped since its last
reset, so that it scores the loud window with the audio behind it that it would have had.
pipecat resets the model every ~2 s of clear non-speech; a skipped window counts toward that
reset as the low score it almost surely had once :data:`UNCOUNTED_WINDOWS` newer ones came, and
the newest ones count with their real scores when Silero catches up. On the repo's speech
fixtures under floor noise and louder background noise, every decision is pipecat's
(``tests/ai_pipeline/test_vad_volume_gate.py``).
"""

from __future__ import annotations

import math
from collections import deque
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
(-70 LUFS) even as a square wave at the top of the band, so pipecat's volume reads exactly 0
without measuring it (:meth:`SharedSileroVADAnalyzer.smoothed_volume_after`)."""

UNCOUNTED_WINDOWS = 16
"""The newest skipped windows (32 ms each) not yet counted toward pipecat's periodic model reset:
the smoothed volume lags the speech's onset by several windows (it rises a fifth of the way per
window), so the onset, which Silero may score high (no reset then), is among them."""

MAX_UNSCORED = 128
"""Skipped windows kept at most (4 s; pipecat's reset lets them go every ~2 s on a quiet line);
past that Silero starts from a fresh state."""

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


Window = tuple[bytes, VADState | None]
"""A window's samples for Silero, and the VAD's state when it came (None: the window was counted
for pipecat's model reset already)."""

QuietHook = Callable[[bool], Awaitable[None]]
"""Called with True when the caller goes quiet, False when they resume before the stop."""


def samples_of(window: bytes) -> np.ndarray:
    """16-bit samples as the float32 Silero takes (pipecat's conversion)."""
    return np.frombuffer(window, dtype=np.int16).astype(np.float32) / 32768.0


def vad_params(vad: VadConfig) -> VADParams:
    """pipecat's VAD parameters from the agent's config."""
    return VADParams(
        confidence=vad.confidence,
        start_secs=vad.start_secs,
        stop_secs=vad.stop_secs,
        min_volume=vad.min_volume,
    )


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
        # Skip SileroVADAnalyzer.__init__ (it loads a model); set up what it would have set.
        VADAnalyzer.__init__(self, sample_rate=sample_rate_hz, params=vad_params(vad))
        self._model = _per_call_model(session)
        self._windows_since_reset = 0
        self._low_confidence_windows = 0
        self.on_quiet: QuietHook | None = None
        self._quiet = False
        self._silent_bytes = 0  # the trailing run of silent-line samples, in bytes
        self._prepared: deque[tuple[float, float]] = deque()  # (smoothed volume, confidence)
        self._volume_due: float | None = None  # the window's volume, after its confidence
        # The windows skipped since Silero last scored or reset, with the VAD's state then:
        self._unscored: deque[tuple[bytes, VADState]] = deque()
        self._uncounted = 0  # the newest of them, not yet counted for pipecat's model reset
        self._stale = False  # Silero missed windows since its last reset: reset it before use

    def smoothed_volume_after(self, audio: bytes, prev_volume: float) -> float:
        """pipecat's smoothed volume once ``audio`` follows a window of ``prev_volume``, without
        measuring a silent line: its BS.1770 loudness over the last 400 ms (~0.1 ms of CPU per
        window) is 0 when all of those samples are within :data:`SILENT_PEAK`."""
        self._volume_tracker.update(audio, self.sample_rate)
        self._silent_bytes = self.silent_run_after(audio, self._silent_bytes)
        raw = 0.0 if self.line_silent(self._silent_bytes) else self._volume_tracker.volume
        return exp_smoothing(raw, prev_volume, self._smoothing_factor)

    def _get_smoothed_volume(self, audio: bytes) -> float:
        """The volume :meth:`analyze_audio` measured for this window before scoring it."""
        volume, self._volume_due = self._volume_due, None
        if volume is None:  # the window was not prepared (called outside the analysis)
            volume = self.smoothed_volume_after(audio, self._prev_volume)
        return volume

    @staticmethod
    def silent_run_after(window: bytes, run_bytes: int) -> int:
        """The silent line's run, in bytes, once ``window`` follows a run of ``run_bytes``."""
        samples = np.frombuffer(window, dtype=np.int16)
        loud = not samples.size or int(np.abs(samples, dtype=np.int32).max()) > SILENT_PEAK
        return 0 if loud else run_bytes + len(window)

    def line_silent(self, run_bytes: int) -> bool:
        """The whole of pipecat's volume window (400 ms) is silent line."""
        return run_bytes >= math.ceil(VOLUME_WINDOW_SECS * self.sample_rate) * 2

    def voice_confidence(self, buffer: bytes) -> float:
        """The score :meth:`analyze_audio` prepared for this window: Silero's, or 0 where the
        volume is under ``min_volume`` (no score could make the window speech)."""
        if not self._prepared:  # called outside the analysis: prepare the window now
            for window, state in self._windows_to_score(buffer):
                self._scored(self._score_now(window), state)
        volume, confidence = self._prepared.popleft()
        self._volume_due = volume
        return confidence

    def _windows_to_score(self, window: bytes) -> list[Window]:
        """Measure ``window``'s volume and say which windows Silero must score, in order: none
        when the volume rules speech out, else the skipped windows it catches up on and then
        this one, each with the VAD state pipecat's model reset would have seen."""
        prev = self._prepared[-1][0] if self._prepared else self._prev_volume
        volume = self.smoothed_volume_after(window, prev)
        self._prepared.append((volume, 0.0))
        if volume < self._params.min_volume:
            self._skipped((window, self._vad_state))
            return []
        if self._stale:  # it missed windows it cannot catch up on
            self._model.reset_states()  # type: ignore[no-untyped-call]
            self._stale = False
        counted = len(self._unscored) - self._uncounted
        todo: list[Window] = [
            (w, None) if i < counted else (w, st) for i, (w, st) in enumerate(self._unscored)
        ]
        todo.append((window, self._vad_state))
        self._unscored.clear()
        self._uncounted = 0
        return todo

    def _skipped(self, window: tuple[bytes, VADState]) -> None:
        """Keep a skipped window for Silero to catch up on. Once :data:`UNCOUNTED_WINDOWS` newer
        ones came, pipecat's periodic model reset counts it as the low score it almost surely
        had (it was quiet), so the resets fall where pipecat's own would on a quiet line, and a
        reset lets go of every window before it."""
        self._unscored.append(window)
        self._uncounted += 1
        if self._uncounted > UNCOUNTED_WINDOWS:
            _, state = self._unscored[-self._uncounted]
            self._uncounted -= 1
            self._count_for_reset(0.0, state)
            if self._windows_since_reset == 0:  # the model reset after that window
                while len(self._unscored) > self._uncounted:
                    self._unscored.popleft()
                self._stale = False
        if len(self._unscored) > MAX_UNSCORED:  # no reset came: give the oldest up
            self._unscored.popleft()
            self._stale = True

    def _scored(self, confidence: float, state: VADState | None) -> None:
        """Silero scored a window of :meth:`_windows_to_score` (the last is the window's own):
        pipecat's periodic model reset counts it, with the VAD state it came in, unless it
        was counted already (``state`` None)."""
        volume, _ = self._prepared[-1]
        self._prepared[-1] = (volume, confidence)
        if state is not None:
            self._count_for_reset(confidence, state)

    def _count_for_reset(self, confidence: float, state: VADState) -> None:
        """pipecat's ``_maybe_reset_model`` for a window that came in VAD state ``state``."""
        current, self._vad_state = self._vad_state, state
        try:
            self._maybe_reset_model(confidence)
        finally:
            self._vad_state = current

    def _score_now(self, window: bytes) -> float:
        """Silero's speech probability for one window, advancing this call's state."""
        return float(self._model(samples_of(window), self.sample_rate)[0].item())

    async def _score(self, window: bytes) -> float:
        return self._score_now(window)

    async def _prepare(self, buffer: bytes) -> None:
        """Volume and score of each window ``buffer`` completes, before pipecat analyses them
        (it takes the score before the volume, and the volume decides whether to score)."""
        self._prepared.clear()  # left over only if an earlier analysis failed
        self._volume_due = None
        size = self._vad_frames_num_bytes
        if len(self._vad_buffer) + len(buffer) < size:
            return  # completes no window
        pending = self._vad_buffer + buffer
        for start in range(0, len(pending) - size + 1, size):
            todo = self._windows_to_score(pending[start : start + size])
            # Windows skipped while the line was quiet are scored here and now, one after the
            # other (each needs the state the one before left): through :meth:`_score` each
            # would wait for a run of its own, one event-loop pass apiece, and the onset of
            # speech behind them for all of those passes. The window's own goes to _score.
            for i, (window, state) in enumerate(todo):
                last = i == len(todo) - 1
                self._scored(await self._score(window) if last else self._score_now(window), state)

    @property
    def quiet(self) -> bool:
        """The caller has gone quiet after speech, and the VAD has not yet said it stopped."""
        return self._quiet

    async def analyze_audio(self, buffer: bytes) -> VADState:
        """Inline: cheaper than the base class's thread hand-off per chunk (see module doc)."""
        await self._prepare(buffer)
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
