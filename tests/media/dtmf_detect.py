"""A small in-band DTMF detector for tests: which keys a stretch of PCM16 holds, in order.

Each 20 ms block's power at the eight Q.23 frequencies (one DFT bin each, Goertzel's figure) picks
the strongest low and high tone; a block is a key when both stand well above the other tones of
their group and carry most of the block's energy (speech or an echo under a tone would not). A
press is a run of blocks with the same key, ended by a block without one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

LOW_HZ = (697, 770, 852, 941)
HIGH_HZ = (1209, 1336, 1477, 1633)
KEYS = ("123A", "456B", "789C", "*0#D")


def _bin_power(block: npt.NDArray[np.float64], freq_hz: float, rate_hz: int) -> float:
    n = np.arange(len(block))
    return float(abs(np.dot(block, np.exp(-2j * np.pi * freq_hz * n / rate_hz))) ** 2)


def block_key(block: npt.NDArray[np.float64], rate_hz: int) -> str | None:
    energy = float(np.dot(block, block)) * len(block) / 2  # a full-scale bin's power scale
    if energy == 0:
        return None
    low = [_bin_power(block, f, rate_hz) for f in LOW_HZ]
    high = [_bin_power(block, f, rate_hz) for f in HIGH_HZ]
    li, hi = int(np.argmax(low)), int(np.argmax(high))
    clear_low = all(p * 10 < low[li] for i, p in enumerate(low) if i != li)
    clear_high = all(p * 10 < high[hi] for i, p in enumerate(high) if i != hi)
    if clear_low and clear_high and low[li] + high[hi] > 0.5 * energy:
        return KEYS[li][hi]
    return None


def dtmf_keys(pcm16: bytes | npt.NDArray[np.int16], rate_hz: int) -> str:
    """The keys pressed in ``pcm16``, in order."""
    x = np.frombuffer(pcm16, dtype="<i2") if isinstance(pcm16, bytes) else pcm16
    samples = x.astype(np.float64)
    size = rate_hz // 50
    keys, last = [], None
    for start in range(0, len(samples) - size + 1, size):
        key = block_key(samples[start : start + size], rate_hz)
        if key is not None and key != last:
            keys.append(key)
        last = key
    return "".join(keys)
