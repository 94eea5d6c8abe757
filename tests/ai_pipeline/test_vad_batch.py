"""Silero batched across calls gives each call what its own VAD would have given it."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import numpy as np
import pipecat.audio.volume as volume_module
import pytest
from pipecat.audio.utils import calculate_audio_volume
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADState

from ai_pipeline.agent_config import VadConfig
from ai_pipeline.engines.models import ModelStore
from ai_pipeline.engines.vad import SharedSileroVADAnalyzer
from ai_pipeline.engines.vad_batch import (
    BatchedSileroVADAnalyzer,
    SileroBatcher,
    SileroRow,
    score_rows,
)
from tests.ai_pipeline.memory_link import FRAME_BYTES, RATE_HZ, load_wav_pcm16, silence_ms

Trace = tuple[list[VADState], list[float]]


def calls_audio() -> list[bytes]:
    """Four different callers, as long as each other: speech, two phrases, noise, silence."""
    noise = np.random.default_rng(3).normal(0, 2000, RATE_HZ * 4).astype(np.int16).tobytes()
    streams = [
        silence_ms(200) + load_wav_pcm16("billing_question.wav"),
        load_wav_pcm16("text_me.wav") + silence_ms(150) + load_wav_pcm16("goodbye.wav"),
        noise,
        silence_ms(4000),
    ]
    seconds = 7
    return [(s + silence_ms(seconds * 1000))[: seconds * RATE_HZ * 2] for s in streams]


def chunks(pcm16: bytes) -> list[bytes]:
    return [pcm16[i : i + FRAME_BYTES] for i in range(0, len(pcm16), FRAME_BYTES)]


def recording(analyzer: SharedSileroVADAnalyzer, scores: list[float]) -> None:
    """Record every window's confidence as the analyzer's state machine sees it."""
    confidence = analyzer.voice_confidence

    def record(buffer: bytes) -> float:
        value = float(np.asarray(confidence(buffer)).reshape(-1)[0])
        scores.append(value)
        return value

    analyzer.voice_confidence = record  # type: ignore[method-assign]


async def one_by_one(models: ModelStore, audio: list[bytes]) -> list[Trace]:
    traces = []
    for pcm16 in audio:
        vad = SharedSileroVADAnalyzer(models.silero_session(), VadConfig(), sample_rate_hz=RATE_HZ)
        vad.set_sample_rate(RATE_HZ)  # what the pipeline's start does
        scores: list[float] = []
        recording(vad, scores)
        states = [await vad.analyze_audio(chunk) for chunk in chunks(pcm16)]
        traces.append((states, scores))
    return traces


async def batched(models: ModelStore, audio: list[bytes], batcher: SileroBatcher) -> list[Trace]:
    session = models.silero_session()
    vads = [BatchedSileroVADAnalyzer(batcher, session, VadConfig()) for _ in audio]
    traces: list[Trace] = [([], []) for _ in audio]
    for vad, (_, scores) in zip(vads, traces, strict=True):
        vad.set_sample_rate(RATE_HZ)
        recording(vad, scores)
    for tick in zip(*(chunks(pcm16) for pcm16 in audio), strict=True):
        states = await asyncio.gather(
            *(v.analyze_audio(c) for v, c in zip(vads, tick, strict=True))
        )
        for (trace_states, _), state in zip(traces, states, strict=True):
            trace_states.append(state)
    return traces


def test_batched_vad_decides_as_each_call_alone(models: ModelStore) -> None:
    audio = calls_audio()
    alone = asyncio.run(one_by_one(models, audio))
    batcher = SileroBatcher(models.silero_session())
    together = asyncio.run(batched(models, audio, batcher))
    for call, ((states_alone, scores_alone), (states_batch, scores_batch)) in enumerate(
        zip(alone, together, strict=True)
    ):
        assert states_batch == states_alone, call  # the same decision after every 20 ms frame
        np.testing.assert_allclose(scores_batch, scores_alone, atol=1e-4, err_msg=str(call))
    # The speech was heard (the comparison is not between two deaf VADs)...
    assert VADState.SPEAKING in alone[0][0] and VADState.SPEAKING in alone[1][0]
    assert VADState.SPEAKING not in alone[3][0]
    # ...the calls' windows were scored together (several per run)...
    assert batcher.windows >= 1.5 * batcher.runs, (batcher.windows, batcher.runs)
    # ...and a silent line's not at all once it had been silent 400 ms (13 windows).
    silent_scores = alone[3][1]
    assert silent_scores[13:] == [0.0] * (len(silent_scores) - 13), silent_scores[:20]
    assert batcher.windows < 3 * len(silent_scores), batcher.windows


def test_score_rows_keeps_each_rows_state_apart(models: ModelStore) -> None:
    """A row's probability does not depend on which other rows share its run."""
    session = models.silero_session()
    rng = np.random.default_rng(5)
    windows = [rng.normal(0, 0.1, 512).astype(np.float32) for _ in range(3)]
    together = [SileroRow() for _ in windows]
    alone = [SileroRow() for _ in windows]
    for _ in range(4):  # several windows, so the states matter
        joint = score_rows(session, together, windows)
        single = [score_rows(session, [row], [w])[0] for row, w in zip(alone, windows, strict=True)]
        assert joint == pytest.approx(single, abs=1e-5)


def test_a_silent_line_is_not_measured_and_reads_the_volume_pipecat_would(
    models: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pipecat measures BS.1770 loudness over the last 400 ms at every window; on a silent line
    (samples within +-3) that reads 0, so the VAD skips it: the smoothed volume is pipecat's
    own, window by window, through speech, silence, near-silence and faint noise."""
    rng = np.random.default_rng(5)
    near_silence = rng.integers(-3, 4, RATE_HZ).astype(np.int16).tobytes()
    faint = rng.integers(-12, 13, RATE_HZ // 2).astype(np.int16).tobytes()
    speech = load_wav_pcm16("billing_question.wav")
    pcm16 = silence_ms(1000) + speech + near_silence + faint + silence_ms(600) + speech
    measured = []
    real = calculate_audio_volume

    def counted(audio: bytes, rate_hz: int) -> float:
        measured.append(1)
        return float(real(audio, rate_hz))

    monkeypatch.setattr(volume_module, "calculate_audio_volume", counted)

    def volumes(
        analyzer: SharedSileroVADAnalyzer, smoothed: Callable[[bytes], float]
    ) -> list[float]:
        analyzer.set_sample_rate(RATE_HZ)
        out = []
        for start in range(0, len(pcm16) - 1023, 1024):  # Silero's 512-sample windows
            analyzer._prev_volume = smoothed(pcm16[start : start + 1024])
            out.append(analyzer._prev_volume)
        return out

    session = models.silero_session()
    theirs = SharedSileroVADAnalyzer(session, VadConfig(), sample_rate_hz=RATE_HZ)
    expected = volumes(theirs, functools.partial(VADAnalyzer._get_smoothed_volume, theirs))
    pipecat_measured = len(measured)
    measured.clear()
    ours = SharedSileroVADAnalyzer(session, VadConfig(), sample_rate_hz=RATE_HZ)
    assert volumes(ours, ours._get_smoothed_volume) == expected
    # Each second of silence past the first 400 ms is ~19 windows not measured.
    assert len(measured) <= pipecat_measured - 30
