"""Silero is not run where the volume already rules speech out, and the VAD decides as before.

pipecat's VAD calls a window speech when Silero's confidence reaches ``confidence`` and the
smoothed volume reaches ``min_volume``. :class:`SharedSileroVADAnalyzer` measures the volume
first and scores only windows loud enough to be speech (catching Silero up on the skipped ones
when the volume comes back). These tests run the repo's speech fixtures on lines with noise
under and around them (a mu-law line's floor noise, and louder background noise either side of
``min_volume``) through pipecat's own Silero analyzer and through ours, per call and batched,
and compare the VAD's state after every 20 ms frame and the smoothed volume.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADState

from ai_pipeline.agent_config import VadConfig
from ai_pipeline.engines.models import ModelStore
from ai_pipeline.engines.vad import SharedSileroVADAnalyzer, _per_call_model, vad_params
from ai_pipeline.engines.vad_batch import BatchedSileroVADAnalyzer, SileroBatcher
from ai_pipeline.turnbench import line_payload
from tests.ai_pipeline.memory_link import FRAME_BYTES, RATE_HZ, SPEECH_DIR, load_wav_pcm16

LINES: list[str | int] = ["floor", 40, 60, 100]
"""What is under and around the speech: a mu-law line's floor noise (samples of +-8 and +-16,
volume ~0.45), and white noise of these RMS levels (volume ~0.54, ~0.58, ~0.62: under, near
and over the default ``min_volume`` of 0.6)."""

Trace = tuple[list[VADState], list[float]]


class PipecatSilero(SileroVADAnalyzer):
    """pipecat's own Silero analyzer (every window scored), on the shared session."""

    def __init__(self, session: object) -> None:
        VADAnalyzer.__init__(self, sample_rate=RATE_HZ, params=vad_params(VadConfig()))
        self._model = _per_call_model(session)
        self._windows_since_reset = 0
        self._low_confidence_windows = 0


def line_noise(line: str | int, samples: int) -> np.ndarray:
    if line == "floor":
        floor = line_payload("floor", samples / RATE_HZ + 1)
        return np.frombuffer(floor, dtype=np.int16)[:samples].astype(np.int32)
    rng = np.random.default_rng(int(line))
    return rng.normal(0, float(line), samples).astype(np.int32)


def fixture_call(line: str | int) -> bytes:
    """Every speech fixture, 1-2 s apart, with the line's noise under all of it."""
    names = sorted(p.name for p in SPEECH_DIR.glob("*.wav"))
    parts: list[np.ndarray] = []
    for i, name in enumerate(names):
        parts.append(np.zeros(int(RATE_HZ * (1.0 + 0.5 * (i % 3))), np.int32))
        parts.append(np.frombuffer(load_wav_pcm16(name), dtype=np.int16).astype(np.int32))
    parts.append(np.zeros(2 * RATE_HZ, np.int32))
    speech = np.concatenate(parts)
    noisy = np.clip(speech + line_noise(line, len(speech)), -32768, 32767)
    return bytes(noisy.astype(np.int16).tobytes())


def chunks(pcm16: bytes) -> list[bytes]:
    return [pcm16[i : i + FRAME_BYTES] for i in range(0, len(pcm16) - FRAME_BYTES + 1, FRAME_BYTES)]


def pipecats(models: ModelStore, pcm16: bytes) -> Trace:
    vad = PipecatSilero(models.silero_session())
    vad.set_sample_rate(RATE_HZ)
    states, volumes = [], []
    for chunk in chunks(pcm16):
        states.append(vad._run_analyzer(chunk))  # what its analyze_audio runs in its thread
        volumes.append(vad._prev_volume)
    return states, volumes


class CountedModel:
    """A call's Silero model that counts the windows it scores."""

    def __init__(self, model: SileroOnnxModel) -> None:
        self.model = model
        self.windows = 0

    def __call__(self, window: np.ndarray, rate_hz: int) -> np.ndarray:
        self.windows += 1
        out: np.ndarray = self.model(window, rate_hz)
        return out

    def reset_states(self) -> None:
        self.model.reset_states()  # type: ignore[no-untyped-call]


async def ours(models: ModelStore, pcm16: bytes) -> tuple[Trace, int]:
    vad = SharedSileroVADAnalyzer(models.silero_session(), VadConfig(), sample_rate_hz=RATE_HZ)
    vad.set_sample_rate(RATE_HZ)
    model = vad._model = CountedModel(vad._model)  # type: ignore[assignment]
    states, volumes = [], []
    for chunk in chunks(pcm16):
        states.append(await vad.analyze_audio(chunk))
        volumes.append(vad._prev_volume)
    return (states, volumes), model.windows


async def batched(models: ModelStore, calls: list[bytes], batcher: SileroBatcher) -> list[Trace]:
    session = models.silero_session()
    vads = [BatchedSileroVADAnalyzer(batcher, session, VadConfig()) for _ in calls]
    for vad in vads:
        vad.set_sample_rate(RATE_HZ)
    traces: list[Trace] = [([], []) for _ in calls]
    for tick in zip(*(chunks(pcm16) for pcm16 in calls), strict=True):
        states = await asyncio.gather(
            *(v.analyze_audio(c) for v, c in zip(vads, tick, strict=True))
        )
        for (trace_states, volumes), state, vad in zip(traces, states, vads, strict=True):
            trace_states.append(state)
            volumes.append(vad._prev_volume)
    return traces


def speech_starts(states: list[VADState]) -> int:
    return sum(
        1
        for before, now in zip([VADState.QUIET, *states], states, strict=False)
        if now == VADState.SPEAKING and before in (VADState.QUIET, VADState.STARTING)
    )


def test_quiet_windows_unscored_and_every_decision_pipecats(models: ModelStore) -> None:
    calls = [fixture_call(line) for line in LINES]
    theirs = [pipecats(models, pcm16) for pcm16 in calls]
    alone = [asyncio.run(ours(models, pcm16)) for pcm16 in calls]
    batcher = SileroBatcher(models.silero_session())
    together = asyncio.run(batched(models, calls, batcher))
    windows = len(chunks(calls[0])) * FRAME_BYTES // 1024
    fixtures = len(list(SPEECH_DIR.glob("*.wav")))
    for line, (states, volumes), ((my_states, my_volumes), _), (b_states, b_volumes) in zip(
        LINES, theirs, alone, together, strict=True
    ):
        # The speech is heard (each fixture at least once): not two deaf VADs agreeing...
        assert speech_starts(states) >= fixtures, line
        # ...the same state after every 20 ms frame, per call and batched...
        assert my_states == states, line
        assert b_states == states, line
        # ...and the volume is pipecat's, value for value.
        assert my_volumes == volumes, line
        assert b_volumes == volumes, line
    # Silero skipped the quiet between the phrases (floor noise: under min_volume; the white
    # noise at RMS 100 is over it, so everything is scored there), catch-up included.
    scored = {line: count for line, (_, count) in zip(LINES, alone, strict=True)}
    assert scored["floor"] < 0.9 * windows, (scored, windows)
    assert scored[100] >= 0.99 * windows, (scored, windows)


@pytest.mark.parametrize("line", ["floor", 40])
def test_a_listening_call_on_a_quiet_line_runs_no_silero(models: ModelStore, line: str) -> None:
    """10 s of a line whose volume stays under ``min_volume``: no window is scored, per call
    or batched, and the VAD stays quiet (pipecat's scored all ~310 windows)."""
    noise = line_noise(line, 10 * RATE_HZ).astype(np.int16).tobytes()
    (states, _), scored = asyncio.run(ours(models, noise))
    assert scored == 0
    assert set(states) == {VADState.QUIET}
    batcher = SileroBatcher(models.silero_session())
    [(b_states, _)] = asyncio.run(batched(models, [noise], batcher))
    assert batcher.windows == 0
    assert b_states == states


def test_pipecats_own_entry_point_decides_the_same(models: ModelStore) -> None:
    """``_run_analyzer`` called directly (as ``bench/probes/silero_sessions.py`` does, without
    :meth:`~SharedSileroVADAnalyzer.analyze_audio`'s preparation) prepares each window itself."""
    pcm16 = fixture_call("floor")[: 8 * RATE_HZ * 2]
    states, volumes = pipecats(models, pcm16)
    vad = SharedSileroVADAnalyzer(models.silero_session(), VadConfig(), sample_rate_hz=RATE_HZ)
    vad.set_sample_rate(RATE_HZ)
    mine = []
    for chunk in chunks(pcm16):
        mine.append((vad._run_analyzer(chunk), vad._prev_volume))
    assert VADState.SPEAKING in states
    assert mine == list(zip(states, volumes, strict=True))


def test_the_catch_up_after_a_quiet_line_takes_no_run_of_its_own(models: ModelStore) -> None:
    """When the volume comes back after a quiet stretch, Silero scores the skipped windows
    before the new one; those go through at once, not one batched run (one event-loop pass)
    each, so the onset of speech is not held back behind them: every 20 ms frame costs at
    most the one batched run of the window it completes."""
    batcher = SileroBatcher(models.silero_session())
    vad = BatchedSileroVADAnalyzer(batcher, models.silero_session(), VadConfig())
    vad.set_sample_rate(RATE_HZ)
    inline = 0
    score_now = vad._score_now

    def counted(window: bytes) -> float:
        nonlocal inline
        inline += 1
        return score_now(window)

    vad._score_now = counted  # type: ignore[method-assign]

    async def runs_per_frame() -> list[int]:
        runs = []
        for chunk in chunks(fixture_call("floor")):
            before = batcher.runs
            await vad.analyze_audio(chunk)
            runs.append(batcher.runs - before)
        return runs

    runs = asyncio.run(runs_per_frame())
    assert max(runs) == 1
    assert inline > 0  # there was a catch-up, and it went through inline
