"""Resampling quality: tones survive, images and aliases are suppressed, chunking is invisible."""

from __future__ import annotations

import numpy as np
import pytest

from media.resample import StreamResampler
from tests.media.conftest import best_snr_db, tone


def run_stream(r: StreamResampler, pcm16: bytes, chunk_bytes: int) -> bytes:
    return b"".join(
        r.process(pcm16[i : i + chunk_bytes]) for i in range(0, len(pcm16), chunk_bytes)
    )


def test_1khz_round_trip_8k_16k_8k_keeps_snr_above_40db() -> None:
    for freq_hz in (1000, 437):  # 437 Hz: no whole-sample period, so the delay is unambiguous
        up, down = StreamResampler(8000, 16000), StreamResampler(16000, 8000)
        src = tone(freq_hz, 2.0)
        out = b"".join(down.process(up.process(src[i : i + 320])) for i in range(0, len(src), 320))
        assert len(out) == len(src)  # one output frame per input frame, no start-up burst
        snr, delay = best_snr_db(src, out, max_delay=100)
        assert snr > 40, (freq_hz, snr)
    assert delay == round((up.delay_ms + down.delay_ms) * 8)  # the filters' stated group delay


@pytest.mark.parametrize(
    ("in_hz", "out_hz"),
    [(8000, 16000), (16000, 8000), (44100, 16000), (16000, 48000), (24000, 16000)],
)
def test_chunk_boundaries_are_invisible(in_hz: int, out_hz: int) -> None:
    """Streaming in 20 ms frames gives exactly what one call over the whole signal gives:
    no clicks can come from frame boundaries."""
    rng = np.random.default_rng(7)
    src = (rng.standard_normal(in_hz) * 3000).astype("<i2").tobytes()
    whole = StreamResampler(in_hz, out_hz).process(src)
    framed = run_stream(StreamResampler(in_hz, out_hz), src, in_hz // 50 * 2)
    odd = run_stream(StreamResampler(in_hz, out_hz), src, 2 * 37)
    assert framed == whole
    assert odd == whole
    assert abs(len(whole) // 2 - out_hz) <= 2


def test_no_discontinuity_at_frame_edges_of_a_tone() -> None:
    """The largest sample-to-sample step in the output stays that of a smooth sine."""
    out = run_stream(StreamResampler(8000, 16000), tone(1000, 1.0), 320)
    y = np.frombuffer(out, dtype="<i2").astype(float)[200:]
    max_step = np.abs(np.diff(y)).max()
    ideal = 0.3 * 32767 * 2 * np.sin(np.pi * 1000 / 16000)
    assert max_step < ideal * 1.05


def level_db(pcm16: bytes) -> float:
    y = np.frombuffer(pcm16, dtype="<i2").astype(float)[400:]
    return 20 * np.log10(np.sqrt((y**2).mean()) + 1e-9)


def test_downsampling_suppresses_aliases() -> None:
    """A 6 kHz tone at 16 kHz would fold to 2 kHz at 8 kHz without the low-pass."""
    passed = level_db(run_stream(StreamResampler(16000, 8000), tone(1000, 1.0, 16000), 640))
    folded = level_db(run_stream(StreamResampler(16000, 8000), tone(6000, 1.0, 16000), 640))
    assert passed - folded > 55


def test_upsampling_suppresses_images() -> None:
    """8k -> 16k of a 3 kHz tone must not add its 5 kHz image."""
    out = run_stream(StreamResampler(8000, 16000), tone(3000, 1.0), 320)
    y = np.frombuffer(out, dtype="<i2").astype(float)[400:]
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    wanted = spectrum[np.abs(freqs - 3000) < 20].max()
    image = spectrum[np.abs(freqs - 5000) < 20].max()
    assert 20 * np.log10(wanted / image) > 55


def test_passthrough_and_reset() -> None:
    same = StreamResampler(8000, 8000)
    assert same.process(b"\x01\x02") == b"\x01\x02" and same.delay_ms == 0
    r = StreamResampler(8000, 16000)
    first = r.process(tone(500, 0.02))
    r.reset()
    assert r.process(tone(500, 0.02)) == first
    with pytest.raises(ValueError):
        StreamResampler(0, 8000)
