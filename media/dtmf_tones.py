"""In-band DTMF (ITU-T Q.23 frequency pairs) for legs with no DTMF signalling of their own.

AudioSocket carries only audio back to Asterisk, so ``send_dtmf`` there plays the tones.
"""

from __future__ import annotations

import numpy as np

_LOW_HZ = {
    "1": 697,
    "2": 697,
    "3": 697,
    "A": 697,
    "4": 770,
    "5": 770,
    "6": 770,
    "B": 770,
    "7": 852,
    "8": 852,
    "9": 852,
    "C": 852,
    "*": 941,
    "0": 941,
    "#": 941,
    "D": 941,
}
_HIGH_HZ = {
    "1": 1209,
    "4": 1209,
    "7": 1209,
    "*": 1209,
    "2": 1336,
    "5": 1336,
    "8": 1336,
    "0": 1336,
    "3": 1477,
    "6": 1477,
    "9": 1477,
    "#": 1477,
    "A": 1633,
    "B": 1633,
    "C": 1633,
    "D": 1633,
}
_LEVEL = 0.25 * 32767  # each tone about -15 dBFS: well inside G.711's range, clearly detectable


def dtmf_pcm16(digits: str, rate_hz: int, tone_ms: int = 100, gap_ms: int = 60) -> bytes:
    """PCM16 for ``digits``: each tone ``tone_ms`` then ``gap_ms`` of silence."""
    bad = [d for d in digits if d not in _LOW_HZ]
    if bad:
        raise ValueError(f"not DTMF digits: {''.join(bad)!r}")
    t = np.arange(rate_hz * tone_ms // 1000) / rate_hz
    gap = np.zeros(rate_hz * gap_ms // 1000)
    parts = []
    for d in digits:
        tone = _LEVEL * (np.sin(2 * np.pi * _LOW_HZ[d] * t) + np.sin(2 * np.pi * _HIGH_HZ[d] * t))
        parts += [tone, gap]
    pcm = np.concatenate(parts) if parts else np.zeros(0)
    return np.rint(pcm).astype("<i2").tobytes()
