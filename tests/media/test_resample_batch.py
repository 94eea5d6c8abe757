"""Many calls resampled in one pass (media/resample_batch.py): the per-call resampler's output,
bit for bit, whatever the chunking and however the chunks are batched, with each call's state
kept as its own."""

from __future__ import annotations

import numpy as np
import pytest

from media.resample import StreamResampler
from media.resample_batch import ResampleBatch, plan

PAIRS = [
    (8000, 16000),
    (16000, 8000),
    (16000, 48000),
    (48000, 16000),
    (8000, 44100),
    (16000, 16000),
]


def _speechlike(rng: np.random.Generator, samples: int) -> bytes:
    """Full-scale noise with clipped peaks: every sample's sum, rounding and clipping matter."""
    x = rng.normal(0, 12000, samples).clip(-32768, 32767)
    return x.astype("<i2").tobytes()


def _chunks(rng: np.random.Generator, pcm16: bytes, frame_bytes: int) -> list[bytes]:
    """Mostly whole 20 ms frames, some split at odd places and some joined (a reader that
    found two frames, a peer that sent a short one)."""
    out, at = [], 0
    while at < len(pcm16):
        size = frame_bytes * int(rng.choice([1, 1, 1, 1, 2]))
        if rng.random() < 0.2:
            size = 2 * int(rng.integers(1, frame_bytes))
        out.append(pcm16[at : at + size])
        at += size
    return out


@pytest.mark.parametrize(("in_hz", "out_hz"), PAIRS)
def test_batched_output_is_the_per_call_output_bit_for_bit(in_hz: int, out_hz: int) -> None:
    """Streams of one rate pair batched together, several chunks of one stream in one batch
    (in order), against each stream resampled alone and against the whole signal at once."""
    rng = np.random.default_rng(in_hz + out_hz)
    frame_bytes = in_hz // 50 * 2
    signals = [_speechlike(rng, in_hz * 2) for _ in range(12)]
    chunked = [_chunks(rng, s, frame_bytes) for s in signals]
    batched = [StreamResampler(in_hz, out_hz) for _ in signals]
    got: list[list[bytes]] = [[] for _ in signals]
    cursor = [0] * len(signals)
    batch = ResampleBatch()
    while any(c < len(ch) for c, ch in zip(cursor, chunked, strict=True)):
        for i, chunks in enumerate(chunked):  # 0-2 chunks of each stream per wake-up
            for _ in range(int(rng.integers(0, 3))):
                if cursor[i] < len(chunks):
                    batch.add(batched[i], chunks[cursor[i]], got[i].append)
                    cursor[i] += 1
        batch.run()
    for signal, chunks, outs in zip(signals, chunked, got, strict=True):
        alone = StreamResampler(in_hz, out_hz)
        assert outs == [alone.process(c) for c in chunks]  # chunk for chunk
        assert b"".join(outs) == StreamResampler(in_hz, out_hz).process(signal)


def test_the_telephone_rates_take_one_pass_for_every_call() -> None:
    """100 calls' 20 ms frames, both directions: one matrix pass per direction, not per call."""
    rng = np.random.default_rng(1)
    up = [StreamResampler(8000, 16000) for _ in range(100)]
    down = [StreamResampler(16000, 8000) for _ in range(100)]
    batch = ResampleBatch()
    outs: list[bytes] = []
    for _ in range(3):
        for r in up:
            batch.add(r, _speechlike(rng, 160), outs.append)
        for r in down:
            batch.add(r, _speechlike(rng, 320), outs.append)
        batch.run()
    assert batch.passes == 3 * 2
    assert [len(o) for o in outs] == ([640] * 100 + [320] * 100) * 3


def test_a_failing_callback_ends_only_its_own_chunk() -> None:
    batch = ResampleBatch()
    heard: list[bytes] = []

    def broken(_: bytes) -> None:
        raise RuntimeError("one call's bug")

    batch.add(StreamResampler(8000, 16000), bytes(320), broken)
    batch.add(StreamResampler(8000, 16000), bytes(320), heard.append)
    batch.run()
    assert heard == [bytes(640)]


@pytest.mark.parametrize(("in_hz", "out_hz"), PAIRS[:4])
def test_20ms_frames_batch_at_every_phase(in_hz: int, out_hz: int) -> None:
    """The rates legs and the agent link use: every phase a stream can be at has a plan."""
    down = in_hz // np.gcd(in_hz, out_hz)
    assert all(plan(in_hz, out_hz, in_hz // 50, t) is not None for t in range(down))
