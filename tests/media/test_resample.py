"""Resampling quality: tones survive, images and aliases are suppressed, chunking is invisible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from media.resample import _TAP_BITS, StreamResampler, _polyphase_bank
from tests.media.conftest import best_snr_db, tone

ROOT = Path(__file__).resolve().parents[2]
RATE_PAIRS = [(8000, 16000), (16000, 8000), (44100, 16000), (16000, 48000), (24000, 16000)]


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


def assert_same_pcm16(got: bytes, want: bytes) -> None:
    """Equal samples, or one short line: how many differ, where the first is, by how much."""
    a, b = np.frombuffer(got, dtype="<i2"), np.frombuffer(want, dtype="<i2")
    assert a.size == b.size, f"{a.size} samples, expected {b.size}"
    differ = np.flatnonzero(a != b)
    if differ.size:
        i = int(differ[0])
        worst = int(np.abs(a.astype(np.int32) - b).max())
        pytest.fail(
            f"{differ.size} of {a.size} samples differ, first at {i} ({a[i]} != {b[i]}),"
            f" largest difference {worst}"
        )


def noise(rate_hz: int) -> bytes:
    rng = np.random.default_rng(7)
    return (rng.standard_normal(rate_hz) * 3000).astype("<i2").tobytes()


@pytest.mark.parametrize(("in_hz", "out_hz"), RATE_PAIRS)
def test_chunk_boundaries_are_invisible(in_hz: int, out_hz: int) -> None:
    """Streaming in 20 ms frames gives exactly what one call over the whole signal gives:
    no clicks can come from frame boundaries."""
    src = noise(in_hz)
    whole = StreamResampler(in_hz, out_hz).process(src)
    assert_same_pcm16(run_stream(StreamResampler(in_hz, out_hz), src, in_hz // 50 * 2), whole)
    assert_same_pcm16(run_stream(StreamResampler(in_hz, out_hz), src, 2 * 37), whole)
    assert abs(len(whole) // 2 - out_hz) <= 2


@pytest.mark.parametrize(("in_hz", "out_hz"), [(16000, 48000), (16000, 8000), (44100, 16000)])
def test_every_sample_is_the_exact_filter_sum_rounded(in_hz: int, out_hz: int) -> None:
    """Integer arithmetic (int64, no BLAS) gives the same samples: the result does not depend
    on a kernel's order of additions, so not on the CPU nor on the chunking."""
    up, down, _, bank = _polyphase_bank(in_hz, out_hz)
    fractional = int(np.count_nonzero(bank != np.rint(bank)))
    assert fractional == 0, f"{fractional} taps are not integers"
    taps = bank.astype(np.int64)
    x = np.frombuffer(noise(in_hz), dtype="<i2").astype(np.int64)
    history = np.concatenate([np.zeros(taps.shape[1] - 1, np.int64), x])
    t = np.arange(0, x.size * up, down)  # each output's position at the upsampled rate
    windows = np.lib.stride_tricks.sliding_window_view(history, taps.shape[1])[t // up]
    acc = np.einsum("ij,ij->i", windows, taps[t % up])
    exact = np.rint(acc / 2**_TAP_BITS)  # acc < 2**53: the division and rint are exact
    want = np.clip(exact, -32768, 32767).astype("<i2").tobytes()
    assert_same_pcm16(run_stream(StreamResampler(in_hz, out_hz), noise(in_hz), 2 * 37), want)


def available_blas_kernels() -> list[str]:
    """OpenBLAS kernels (``OPENBLAS_CORETYPE``) this CPU can run: AVX-512 machines pick
    SkylakeX, whose sums were ordered differently from Haswell's."""
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    wanted = {"SkylakeX": "avx512f", "Haswell": "avx2", "Sandybridge": "avx", "Nehalem": "sse4_2"}
    return [kernel for kernel, flag in wanted.items() if flag in flags]


KERNEL_RUN = """
import hashlib, json, sys
import numpy as np
from media.resample import StreamResampler
rng = np.random.default_rng(7)
out = {}
for in_hz, out_hz in json.loads(sys.argv[1]):
    src = (rng.standard_normal(in_hz) * 3000).astype("<i2").tobytes()
    for chunk in (len(src), in_hz // 50 * 2, 74):
        r = StreamResampler(in_hz, out_hz)
        pcm16 = b"".join(r.process(src[i : i + chunk]) for i in range(0, len(src), chunk))
        out[f"{in_hz}->{out_hz} chunk {chunk}"] = hashlib.sha256(pcm16).hexdigest()
print(json.dumps(out))
"""


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs Linux's /proc/cpuinfo")
def test_same_samples_on_every_blas_kernel_this_cpu_runs() -> None:
    """The same bytes whichever kernel OpenBLAS picks and however the input is chunked (an
    AVX-512 kernel made 20 ms frames differ from the whole signal by one LSB)."""
    results = {}
    for kernel in available_blas_kernels():
        env = {"OPENBLAS_CORETYPE": kernel, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", KERNEL_RUN, json.dumps(RATE_PAIRS)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        results[kernel] = json.loads(done.stdout)
    for in_hz, out_hz in RATE_PAIRS:
        pair = f"{in_hz}->{out_hz} "
        runs = {
            f"{kernel} {case}": digest
            for kernel, result in results.items()
            for case, digest in result.items()
            if case.startswith(pair)
        }
        first = next(iter(runs.values()))
        assert all(d == first for d in runs.values()), [f"{k}: {d[:12]}" for k, d in runs.items()]


def test_no_discontinuity_at_frame_edges_of_a_tone() -> None:
    """The largest sample-to-sample step in the output stays that of a smooth sine."""
    out = run_stream(StreamResampler(8000, 16000), tone(1000, 1.0), 320)
    y = np.frombuffer(out, dtype="<i2").astype(float)[200:]
    max_step = np.abs(np.diff(y)).max()
    ideal = 0.3 * 32767 * 2 * np.sin(np.pi * 1000 / 16000)
    assert max_step < ideal * 1.05


def level_db(pcm16: bytes) -> float:
    y = np.frombuffer(pcm16, dtype="<i2").astype(float)[400:]
    return float(20 * np.log10(np.sqrt((y**2).mean()) + 1e-9))


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
