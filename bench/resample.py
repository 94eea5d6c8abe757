"""``callbridge bench resample``: our resampler against the ones a user would otherwise pick.

Every candidate sees 20 ms PCM16 frames one at a time, as a media server does. Measured:
cost per frame each way (8k->16k, 16k->8k), the SNR of a 1 kHz tone taken 8k->16k->8k (tone
fitted by least squares, so the figure ignores delay and counts everything else as noise),
imaging of an 8 kHz sweep upsampled (energy above 4.1 kHz), aliasing of a 4.2-7.8 kHz sweep
downsampled (everything that comes out is alias), clicks at frame joins (peak error within two
samples of a join), and latency: audio fed before the first output, and how long samples are
held beyond framing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.progress import Progress
from bench.report import format_table, results_folder, write_json
from bench.resamplers import Candidate, Resampler, ResamplerFactory, candidates
from media.audio import FRAME_MS, LINK_RATE_HZ, TELEPHONY_RATE_HZ, samples_per_frame

TONE_HZ = 1000.0
AMPLITUDE = 16384.0  # -6 dBFS: room for overshoot without clipping
SIGNAL_S = 2.0
EDGE_S = 0.25  # skipped at both ends of quality signals: start-up and flush transients


@dataclass(frozen=True, slots=True)
class ResampleRow:
    name: str
    note: str
    cost_up_us: float | None = None
    cost_down_us: float | None = None
    snr_up_db: float | None = None
    snr_db: float | None = None
    image_up_db: float | None = None
    alias_down_db: float | None = None
    click_db: float | None = None
    first_output_ms: float | None = None
    delay_ms: float | None = None
    delay_max_ms: float | None = None


def frames(pcm16: np.ndarray, rate_hz: int) -> Iterator[bytes]:
    step = samples_per_frame(rate_hz)
    for start in range(0, pcm16.size - step + 1, step):
        yield pcm16[start : start + step].tobytes()


def stream_through(
    resampler: Resampler, pcm16: np.ndarray, rate_hz: int
) -> tuple[np.ndarray, list[int]]:
    """Feed ``pcm16`` frame by frame; returns the output and the sample offsets of its joins."""
    chunks: list[np.ndarray] = []
    joins: list[int] = []
    total = 0
    for frame in frames(pcm16, rate_hz):
        out = np.frombuffer(resampler.process(frame), dtype=np.int16)
        if out.size:
            chunks.append(out)
            total += out.size
            joins.append(total)
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)), joins


def tone(rate_hz: int, freq_hz: float = TONE_HZ, seconds: float = SIGNAL_S) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return np.round(AMPLITUDE * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def sweep(rate_hz: int, f0_hz: float, f1_hz: float, seconds: float = SIGNAL_S) -> np.ndarray:
    """A linear chirp from ``f0_hz`` to ``f1_hz``."""
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    phase = 2 * np.pi * (f0_hz * t + (f1_hz - f0_hz) * t * t / (2 * seconds))
    return np.round(AMPLITUDE * np.sin(phase)).astype(np.int16)


def fit_tone(signal: np.ndarray, rate_hz: int, freq_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fit of a sinusoid at ``freq_hz`` plus offset; returns (fit, residual)."""
    x = signal.astype(np.float64)
    t = np.arange(x.size) / rate_hz
    basis = np.stack(
        [np.sin(2 * np.pi * freq_hz * t), np.cos(2 * np.pi * freq_hz * t), np.ones_like(t)], 1
    )
    coeffs, *_ = np.linalg.lstsq(basis, x, rcond=None)
    fit = basis @ coeffs
    return fit, x - fit


def _db(power_ratio: float) -> float:
    return round(10 * float(np.log10(max(power_ratio, 1e-20))), 2)


def _trim(signal: np.ndarray, rate_hz: int) -> tuple[np.ndarray, int]:
    edge = int(EDGE_S * rate_hz)
    return signal[edge : signal.size - edge], edge


def measure_cost_us(
    factory: ResamplerFactory,
    in_rate_hz: int,
    out_rate_hz: int,
    rng: np.random.Generator,
    n_frames: int,
) -> float:
    """Mean wall time of ``process`` on one 20 ms frame of noise, after a short warm-up."""
    resampler = factory(in_rate_hz, out_rate_hz)
    step = samples_per_frame(in_rate_hz)
    noise = rng.normal(0, 3000, step * n_frames).clip(-32768, 32767).astype(np.int16)
    batch = list(frames(noise, in_rate_hz))
    for frame in batch[:10]:
        resampler.process(frame)
    start = time.perf_counter_ns()
    for frame in batch:
        resampler.process(frame)
    return round((time.perf_counter_ns() - start) / len(batch) / 1000, 2)


def _tone_snr(signal: np.ndarray, rate_hz: int) -> float:
    fit, residual = fit_tone(signal, rate_hz, TONE_HZ)
    return _db(float(np.mean(fit**2)) / max(float(np.mean(residual**2)), 1e-20))


def measure_snr_and_clicks(
    factory: ResamplerFactory,
) -> tuple[float | None, float | None, float | None]:
    """(SNR after 8k->16k, SNR after 8k->16k->8k, click level at frame joins), all in dB.

    Both SNRs are reported because a round trip hides some faults: linear interpolation up
    followed by plain decimation gives back the very input samples, images and all removed.
    """
    up, joins = stream_through(
        factory(TELEPHONY_RATE_HZ, LINK_RATE_HZ), tone(TELEPHONY_RATE_HZ), TELEPHONY_RATE_HZ
    )
    down, _ = stream_through(factory(LINK_RATE_HZ, TELEPHONY_RATE_HZ), up, LINK_RATE_HZ)
    if down.size < TELEPHONY_RATE_HZ:
        return None, None, None
    up_body, edge = _trim(up, LINK_RATE_HZ)
    _, up_residual = fit_tone(up_body, LINK_RATE_HZ, TONE_HZ)
    near = [j - edge + d for j in joins for d in range(-2, 2) if 0 <= j - edge + d < up_body.size]
    peak = float(np.max(np.abs(up_residual[near]))) if near else 0.0
    return (
        _tone_snr(up_body, LINK_RATE_HZ),
        _tone_snr(_trim(down, TELEPHONY_RATE_HZ)[0], TELEPHONY_RATE_HZ),
        _db((peak / AMPLITUDE) ** 2),
    )


def measure_image_up(factory: ResamplerFactory) -> float | None:
    up, _ = stream_through(
        factory(TELEPHONY_RATE_HZ, LINK_RATE_HZ),
        sweep(TELEPHONY_RATE_HZ, 100, 3900),
        TELEPHONY_RATE_HZ,
    )
    body, _ = _trim(up, LINK_RATE_HZ)
    if body.size == 0:
        return None
    spectrum = np.abs(np.fft.rfft(body.astype(np.float64) * np.hanning(body.size))) ** 2
    freqs = np.fft.rfftfreq(body.size, 1 / LINK_RATE_HZ)
    return _db(float(spectrum[freqs > 4100].sum()) / max(float(spectrum.sum()), 1e-20))


def measure_alias_down(factory: ResamplerFactory) -> float | None:
    source = sweep(LINK_RATE_HZ, 4200, 7800)
    down, _ = stream_through(factory(LINK_RATE_HZ, TELEPHONY_RATE_HZ), source, LINK_RATE_HZ)
    body, _ = _trim(down, TELEPHONY_RATE_HZ)
    if body.size == 0:
        return None
    out_power = float(np.mean(body.astype(np.float64) ** 2))
    in_power = float(np.mean(source.astype(np.float64) ** 2))
    return _db(out_power / in_power)


def measure_latency(factory: ResamplerFactory) -> tuple[float | None, float | None, float | None]:
    """(audio fed before the first output, mean and worst extra delay beyond framing), in ms.

    A sample fed in call ``i`` that leaves in call ``k`` at a stream position shifted by
    ``shift`` (the filter's delay, found from an impulse) was held ``(k - i) * 20 + shift`` ms
    longer than by a resampler that returns everything it is given at once. soxr's stream
    returns audio in ~100 ms bursts, so its hold depends on where a sample falls: the mean and
    the worst case over every sample after the first 200 ms are both reported.
    """
    resampler = factory(TELEPHONY_RATE_HZ, LINK_RATE_HZ)
    step = samples_per_frame(TELEPHONY_RATE_HZ)
    impulse_at = 10 * step + 40
    signal = np.zeros(step * 40, np.int16)
    signal[impulse_at] = 20000
    first_output_ms: float | None = None
    chunks = []
    emitted_by_call: list[int] = []
    for index, frame in enumerate(frames(signal, TELEPHONY_RATE_HZ)):
        out = np.frombuffer(resampler.process(frame), dtype=np.int16)
        if out.size and first_output_ms is None:
            first_output_ms = float((index + 1) * FRAME_MS)
        chunks.append(out)
        emitted_by_call.append(sum(c.size for c in chunks))
    up = np.concatenate(chunks)
    if up.size == 0 or not np.any(up):
        return first_output_ms, None, None
    peak = int(np.argmax(np.abs(up.astype(np.int32))))
    shift_ms = peak * 1000 / LINK_RATE_HZ - impulse_at * 1000 / TELEPHONY_RATE_HZ
    positions = np.arange(up.size)
    out_call = np.searchsorted(emitted_by_call, positions, side="right")
    in_call = np.floor((positions * 1000 / LINK_RATE_HZ - shift_ms) / FRAME_MS)
    steady = in_call >= 10
    if not np.any(steady):
        return first_output_ms, None, None
    held_ms = (out_call[steady] - in_call[steady]) * FRAME_MS + shift_ms
    return first_output_ms, round(float(held_ms.mean()), 2), round(float(held_ms.max()), 2)


def measure(candidate: Candidate, rng: np.random.Generator, n_frames: int) -> ResampleRow:
    if candidate.factory is None:
        return ResampleRow(candidate.name, candidate.note)
    f = candidate.factory
    snr_up, snr, clicks = measure_snr_and_clicks(f)
    first_ms, delay_ms, delay_max_ms = measure_latency(f)
    return ResampleRow(
        name=candidate.name,
        note=candidate.note,
        cost_up_us=measure_cost_us(f, TELEPHONY_RATE_HZ, LINK_RATE_HZ, rng, n_frames),
        cost_down_us=measure_cost_us(f, LINK_RATE_HZ, TELEPHONY_RATE_HZ, rng, n_frames),
        snr_up_db=snr_up,
        snr_db=snr,
        image_up_db=measure_image_up(f),
        alias_down_db=measure_alias_down(f),
        click_db=clicks,
        first_output_ms=first_ms,
        delay_ms=delay_ms,
        delay_max_ms=delay_max_ms,
    )


def run_resample(
    seed: int, n_frames: int, out_dir: Path | None = None
) -> tuple[Path, list[ResampleRow]]:
    """Measure every candidate; write JSON and plots; return the folder and the rows."""
    rng = np.random.default_rng(seed)
    rows: list[ResampleRow] = []
    pool = candidates()
    with Progress("resample", len(pool)) as bar:
        for done, candidate in enumerate(pool, 1):
            rows.append(measure(candidate, rng, n_frames))
            bar.update(done)
    folder = results_folder("resample", out_dir)
    params: dict[str, Any] = {
        "frames_per_cost": n_frames,
        "tone_hz": TONE_HZ,
        "signal_s": SIGNAL_S,
        "frame_ms": 20,
    }
    write_json(folder, "resample", seed, params, [asdict(r) for r in rows])
    from bench.plots import plot_resample

    plot_resample(folder, rows)
    return folder, rows


_COLUMNS = (
    ("resampler", "name"),
    ("up us", "cost_up_us"),
    ("down us", "cost_down_us"),
    ("SNR up dB", "snr_up_db"),
    ("SNR rt dB", "snr_db"),
    ("image dB", "image_up_db"),
    ("alias dB", "alias_down_db"),
    ("click dB", "click_db"),
    ("1st out ms", "first_output_ms"),
    ("delay ms", "delay_ms"),
    ("delay max", "delay_max_ms"),
    ("note", "note"),
)


def summary_table(rows: list[ResampleRow]) -> str:
    headers = [header for header, _ in _COLUMNS]
    return format_table(headers, [[getattr(r, field) for _, field in _COLUMNS] for r in rows])
