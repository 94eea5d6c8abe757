"""The bridge's N-1 mixer (media/mixer.py): properties over random participants and signals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.mixer import (
    ENTRY_TONE,
    FRAME_SAMPLES,
    FULL_SCALE,
    LIMIT_THRESHOLD,
    MIX_RATE_HZ,
    Mixer,
)

S = FRAME_SAMPLES


def joined(n: int, **kwargs: float) -> Mixer:
    mixer = Mixer()
    for i in range(n):
        mixer.add(f"p{i}", **kwargs)
    return mixer


def noise(rng: np.random.Generator, n: int, frames: int, level: float) -> np.ndarray:
    return np.clip(rng.standard_normal((n, frames * S)) * level, -32767, 32767).astype(np.int16)


def run(mixer: Mixer, signal: np.ndarray) -> np.ndarray:
    """Mix ``signal`` (participants x samples) frame by frame; returns the outputs joined."""
    out = [mixer.mix(signal[:, i : i + S]) for i in range(0, signal.shape[1], S)]
    return np.concatenate(out, axis=1)


def sines(freqs_hz: list[float], seconds: float, level: float) -> np.ndarray:
    t = np.arange(int(seconds * MIX_RATE_HZ)) / MIX_RATE_HZ
    return np.array([level * np.sin(2 * np.pi * f * t) for f in freqs_hz]).astype(np.int16)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 7),
    seed=st.integers(0, 2**32 - 1),
    level=st.floats(100, 30000),
    gain=st.floats(0.05, 2.0),
)
def test_own_voice_never_reaches_own_output(n: int, seed: int, level: float, gain: float) -> None:
    """Whatever q sends, q's output is bit-for-bit the same (so nothing of it is in there, not
    even a rounding), through fades, gains and the limiter; nor does it correlate with it."""
    rng = np.random.default_rng(seed)
    signal = noise(rng, n, 6, level)

    def mixer() -> Mixer:
        m = joined(n)
        m.set_gain("p0", send_gain=gain)
        m.set_gain(f"p{n - 1}", send_gain=gain / 3, hear_gain=gain)
        return m

    first = run(mixer(), signal)
    changed = signal.copy()
    changed[0] = noise(rng, 1, 6, level)[0]
    second = run(mixer(), changed)
    assert np.array_equal(first[0], second[0])
    assert not np.array_equal(first[1], second[1])  # the others do hear p0
    corr = np.corrcoef(first[0].astype(float), signal[0].astype(float))[0, 1]
    assert abs(corr) < 0.1


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 7), seed=st.integers(0, 2**32 - 1))
def test_below_the_threshold_the_mix_is_the_exact_sum(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    per_talker = LIMIT_THRESHOLD / (n - 1)
    signal = np.clip(noise(rng, n, 5, per_talker / 4), -per_talker, per_talker).astype(np.int16)
    out = run(joined(n), signal)[:, S:]  # after the join's fade-in frame
    total = signal.astype(np.int64).sum(axis=0)
    expected = total[None, :] - signal.astype(np.int64)
    assert np.array_equal(out, expected[:, S:])


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 9), seed=st.integers(0, 2**32 - 1), level=st.floats(3000, 60000))
def test_output_is_bounded_and_never_hard_clipped(n: int, seed: int, level: float) -> None:
    rng = np.random.default_rng(seed)
    out = run(joined(n), noise(rng, n, 8, level)).astype(np.int32)
    assert np.abs(out).max() <= FULL_SCALE
    # a hard clip shows as flat tops: the same full-scale value on consecutive samples
    at_rail = np.abs(out) >= FULL_SCALE - 1
    assert not (at_rail[:, 1:] & at_rail[:, :-1]).any()


def test_five_loud_talkers_neither_clip_nor_distort() -> None:
    freqs = [312.5, 437.5, 562.5, 687.5, 812.5]  # whole cycles per 64 ms: clean FFT bins
    signal = sines(freqs, 2.0, 0.95 * FULL_SCALE)
    out = run(joined(5), signal).astype(float)
    settled = out[:, 8192 : 8192 + 16384]  # after 0.5 s; a whole number of every period
    assert np.abs(out).max() <= FULL_SCALE
    assert np.abs(settled).max() <= LIMIT_THRESHOLD + 1
    for q in range(5):
        spectrum = np.abs(np.fft.rfft(settled[q])) ** 2
        bins = np.fft.rfftfreq(settled.shape[1], 1 / MIX_RATE_HZ)
        wanted = np.zeros_like(spectrum, dtype=bool)
        for i, f in enumerate(freqs):
            if i != q:
                wanted |= np.abs(bins - f) <= 4
        others_db = 10 * np.log10(spectrum[~wanted].sum() / spectrum[wanted].sum())
        assert others_db < -35, (q, others_db)  # the limiter rides the level, it does not clip
        own = np.abs(bins - freqs[q]) <= 4
        assert 10 * np.log10(spectrum[own].sum() / spectrum[wanted].sum()) < -60


@settings(max_examples=30, deadline=None)
@given(level=st.floats(2000, 20000), join_frame=st.integers(1, 4), stay=st.integers(1, 5))
def test_join_and_leave_fade_instead_of_stepping(level: float, join_frame: int, stay: int) -> None:
    """A constant (DC) talker is the worst case for a click: a step would jump by ``level``.
    The listener hears a ramp, one frame long, at both ends."""
    mixer = joined(1)
    heard: list[np.ndarray] = []
    for frame in range(join_frame + stay + 3):
        if frame == join_frame:
            mixer.add("talker")
        if frame == join_frame + stay:
            mixer.remove("talker")
        rows = np.zeros((len(mixer.ids), S), np.int16)
        if "talker" in mixer.ids:
            rows[mixer.ids.index("talker")] = int(level)
        heard.append(mixer.mix(rows)[0])
    listener = np.concatenate(heard).astype(float)
    assert np.abs(np.diff(listener)).max() <= level / S + 1
    assert listener[(join_frame + 1) * S : (join_frame + stay) * S] == pytest.approx(int(level))
    assert not listener[(join_frame + stay + 1) * S :].any()
    assert mixer.ids == ("p0",)


def test_mute_and_gain() -> None:
    mixer = joined(3)
    rows = np.array([[1000] * S, [2000] * S, [3000] * S], np.int16)
    mixer.mix(rows)  # fade-in frame
    mixer.set_gain("p1", send_gain=0.5)
    mixer.set_mute("p2", send=True)
    mixer.set_mute("p0", hear=True)
    mixer.mix(rows)  # the mute fades over this frame
    out = mixer.mix(rows)
    assert (out[0] == 0).all()  # p0 hears nothing
    assert (out[1] == 1000).all()  # p1 hears p0 only (p2 muted)
    assert (out[2] == 1000 + 1000).all()  # p2 still hears: p0 and half of p1
    mixer.set_mute("p2", send=False)
    mixer.set_mute("p0", hear=False)
    mixer.mix(rows)
    out = mixer.mix(rows)
    assert (out[0] == 1000 + 3000).all() and (out[1] == 1000 + 3000).all()


def test_entry_tone_goes_to_the_chosen_hearers_only() -> None:
    mixer = joined(3)
    silence = np.zeros((3, S), np.int16)
    mixer.mix(silence)
    mixer.announce(ENTRY_TONE, ["p0", "p1"])
    frames = [mixer.mix(silence) for _ in range(ENTRY_TONE.size // S + 2)]
    out = np.concatenate(frames, axis=1).astype(float)
    assert np.abs(out[0, : ENTRY_TONE.size] - ENTRY_TONE).max() <= 0.5
    assert np.array_equal(out[0], out[1]) and not out[2].any()
    assert not out[:, ENTRY_TONE.size :].any()  # played once


def test_bad_settings_are_refused() -> None:
    mixer = joined(2)
    with pytest.raises(ValueError):
        mixer.set_gain("p0", send_gain=-1)
    with pytest.raises(KeyError):
        mixer.add("p0")
    with pytest.raises(ValueError):
        mixer.mix(np.zeros((3, S), np.int16))


def test_mutes_at_unity_gain_leave_the_exact_sum_of_the_others() -> None:
    """The usual tick (every gain 1) with a muted talker and a muted listener."""
    mixer = joined(4)
    rng = np.random.default_rng(3)
    mixer.set_mute("p1", send=True)
    mixer.set_mute("p3", hear=True)
    for _ in range(2):  # the mutes fade over the first frame
        mixer.mix(noise(rng, 4, 1, 2000))
    frames = noise(rng, 4, 1, 2000)
    out = mixer.mix(frames).astype(np.int64)
    heard = frames.astype(np.int64) * np.array([[1], [0], [1], [1]])
    expected = heard.sum(axis=0)[None, :] - heard
    expected[3] = 0
    assert np.array_equal(out, expected)


def test_after_a_loud_passage_the_limiter_lets_go() -> None:
    """Once the hold and the release are over, the mix is the exact sum again."""
    mixer = joined(3)
    rng = np.random.default_rng(5)
    run(mixer, noise(rng, 3, 25, 30000))  # half a second of shouting: the limiter rides it
    quiet = noise(rng, 3, 100, 2000)  # then two seconds of talk far below the threshold
    out = run(mixer, quiet)[:, -10 * S :].astype(np.int64)
    total = quiet[:, -10 * S :].astype(np.int64)
    assert np.array_equal(out, total.sum(axis=0)[None, :] - total)
