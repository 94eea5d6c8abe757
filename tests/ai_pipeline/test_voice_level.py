"""The agent's voice leveller: a steady target level, peaks under the ceiling, quiet pauses."""

from __future__ import annotations

import numpy as np
import pytest

from ai_pipeline.voice_level import VoiceLeveller

RATE = 16_000


def speech_like(seconds: float, level_dbfs: float, seed: int = 7) -> np.ndarray:
    """Voiced syllables (a 140 Hz harmonic buzz under a 4 Hz envelope) with pauses, scaled so
    its active speech level (mean power of 10 ms blocks above -45 dBFS) is ``level_dbfs``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    buzz = sum(np.sin(2 * np.pi * 140 * k * t + rng.uniform(0, 6)) / k for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    envelope *= np.sin(2 * np.pi * 0.5 * t) > -0.3  # phrases and pauses
    x = buzz * envelope
    x *= 10_000 / np.abs(x).max()  # well above the gate, so its level can be measured
    scaled: np.ndarray = x * 10 ** ((level_dbfs - active_level_dbfs(x)) / 20)
    return scaled


def active_level_dbfs(x: np.ndarray) -> float:
    blocks = x[: x.size // 160 * 160].reshape(-1, 160)
    power = (blocks**2).mean(axis=1)
    speech = power > (32768 * 10 ** (-45 / 20)) ** 2
    return float(10 * np.log10(power[speech].mean() / 32768**2))


def run(leveller: VoiceLeveller, x: np.ndarray, chunk: int = 320) -> np.ndarray:
    pcm = np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()
    out = b"".join(leveller.process(pcm[i : i + 2 * chunk]) for i in range(0, len(pcm), 2 * chunk))
    return np.frombuffer(out, dtype="<i2").astype(np.float64)


@pytest.mark.parametrize("level", [-31.0, -26.0, -14.0])
def test_voices_of_any_level_come_out_at_the_target(level: float) -> None:
    y = run(VoiceLeveller(RATE, target_dbfs=-20), speech_like(8, level))
    assert active_level_dbfs(y[3 * RATE :]) == pytest.approx(-20, abs=1.0)


def test_peaks_at_full_scale_stay_under_the_ceiling_and_nothing_clips() -> None:
    x = speech_like(6, -18)
    x[::997] = 32767  # clicks at full scale, as a TTS engine that clips produces
    y = run(VoiceLeveller(RATE, target_dbfs=-20, ceiling_dbfs=-3), x)
    assert np.abs(y).max() <= 32768 * 10 ** (-3 / 20) + 1
    assert active_level_dbfs(y[2 * RATE :]) == pytest.approx(-20, abs=1.5)


def test_pauses_and_room_noise_are_not_boosted() -> None:
    quiet = np.random.default_rng(1).normal(0, 32768 * 10 ** (-60 / 20), 3 * RATE)
    leveller = VoiceLeveller(RATE, target_dbfs=-20)
    y = run(leveller, quiet)
    assert leveller.speech_level_dbfs is None
    assert np.sqrt((y**2).mean()) == pytest.approx(np.sqrt((quiet**2).mean()), rel=0.05)


def test_the_boost_is_bounded() -> None:
    y = run(VoiceLeveller(RATE, target_dbfs=-20, max_boost_db=12), speech_like(6, -40))
    assert active_level_dbfs(y[3 * RATE :]) == pytest.approx(-28, abs=1.0)


def test_gain_changes_make_no_clicks() -> None:
    """A tone that swells from quiet to past full scale within 100 ms (as steep as a spoken
    onset) and back: the gain falls and recovers in ramps, so no sample jumps further than a
    sine at the ceiling can (a gain step would), and only a handful of onset samples, under
    0.1 %, are held at the ceiling."""
    t = np.arange(5 * RATE) / RATE
    swell = np.clip((t - 2) / 0.1, 0, 1) * np.clip((3.5 - t) / 0.1, 0, 1)
    amp = 3000 + 29000 * (0.5 - 0.5 * np.cos(np.pi * swell))
    w = 2 * np.pi * 300 / RATE
    y = run(VoiceLeveller(RATE, target_dbfs=-20), amp * np.sin(w * RATE * t), chunk=333)
    ceiling = 32768 * 10 ** (-3 / 20)
    assert np.abs(np.diff(y)).max() <= ceiling * w * 1.05
    assert np.abs(y).max() <= ceiling + 1
    assert (np.abs(y) >= ceiling - 1).mean() < 0.001


def test_chunk_sizes_do_not_matter_for_the_level() -> None:
    x = speech_like(6, -30)
    a = run(VoiceLeveller(RATE), x, chunk=320)
    b = run(VoiceLeveller(RATE), x, chunk=1777)
    assert active_level_dbfs(a[3 * RATE :]) == pytest.approx(
        active_level_dbfs(b[3 * RATE :]), abs=0.3
    )


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        VoiceLeveller(RATE, target_dbfs=-2, ceiling_dbfs=-3)
    with pytest.raises(ValueError):
        VoiceLeveller(0)
