"""Measuring tones in what a caller heard: the bridge, conference and transfer tests."""

from __future__ import annotations

import numpy as np


def tone_db(pcm16: bytes, freq_hz: float, rate_hz: int = 8000) -> float:
    """Level of ``freq_hz`` in ``pcm16``, dB relative to a full-scale sine (Hann window, the
    strongest bin within 15 Hz); -200 for too little audio to tell."""
    x = np.frombuffer(pcm16, "<i2").astype(float)
    if x.size < 400:
        return -200.0
    window = np.hanning(x.size)
    spectrum = np.abs(np.fft.rfft(x * window)) * 2 / window.sum()
    near = np.abs(np.fft.rfftfreq(x.size, 1 / rate_hz) - freq_hz) <= 15
    return float(20 * np.log10(spectrum[near].max() / 32767 + 1e-12))
