"""The agent's voice at a steady telephone level, with its peaks kept off full scale.

Users of phone voice agents hear two faults (pipecat's and LiveKit's trackers): a voice too quiet
to follow on a handset, and a voice that crackles. TTS engines differ by 10 dB and more in
level, and some peak at full scale: the offline piper voice reaches 0 dBFS and clips 0.003 % of
its samples before any resampling, and every later step (resampling to 8 kHz, G.711) can only
keep or worsen that. This leveller sits on the agent's audio before it leaves the agent:

- **Level**: the active speech level (the mean power of 10 ms blocks above a speech gate, in the
  spirit of ITU-T P.56) is tracked over about ``time_constant_s`` of speech; the gain moves the
  voice to ``target_dbfs``, within ``max_boost_db`` / ``max_cut_db``. Silence and breath below
  the gate never change the estimate, so pauses are not pumped up.
- **Peaks**: a block whose peak would pass ``ceiling_dbfs`` ends at the gain that puts it there
  (a 2 ms ramp down at the block's start); afterwards the gain returns to the level's gain at
  ``release_db_per_s`` in ramps across whole blocks. No gain change is a step, so none clicks;
  the few samples of a steep onset that pass the ceiling during the 2 ms are held at it.

Pure and clock-free: bytes in, bytes out, one instance per call (the level is the voice's, so it
carries over from one utterance to the next).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

BLOCK_S = 0.010
ATTACK_S = 0.002  # a gain cut takes effect over this long: quick, yet no step
SPEECH_GATE_DBFS = -45.0
FULL_SCALE = 32768.0


def db_to_gain(db: float) -> float:
    return float(10 ** (db / 20))


_GATE_POWER = db_to_gain(2 * SPEECH_GATE_DBFS) * FULL_SCALE**2  # a block's mean power at the gate


class VoiceLeveller:
    def __init__(
        self,
        rate_hz: int,
        target_dbfs: float = -20.0,
        ceiling_dbfs: float = -3.0,
        max_boost_db: float = 12.0,
        max_cut_db: float = 12.0,
        time_constant_s: float = 1.5,
        release_db_per_s: float = 20.0,
    ) -> None:
        if rate_hz <= 0:
            raise ValueError("rate_hz must be positive")
        if not target_dbfs < ceiling_dbfs <= 0:
            raise ValueError("need target_dbfs < ceiling_dbfs <= 0")
        self.rate_hz = rate_hz
        self.target_dbfs = target_dbfs
        self._block = max(1, round(rate_hz * BLOCK_S))
        self._attack = max(1, round(rate_hz * ATTACK_S))
        self._ceiling = db_to_gain(ceiling_dbfs) * FULL_SCALE
        self._min_gain_db, self._max_gain_db = -max_cut_db, max_boost_db
        self._blocks_per_tc = time_constant_s / BLOCK_S
        self._release_db = release_db_per_s * BLOCK_S  # per block
        self._speech_blocks = 0
        self._mean_power = 0.0  # of speech blocks, in full-scale units squared
        self._gain_db = 0.0  # the gain applied at the end of the last block

    @property
    def speech_level_dbfs(self) -> float | None:
        """The tracked active speech level; None before any speech."""
        if not self._speech_blocks:
            return None
        return 10 * math.log10(self._mean_power / FULL_SCALE**2)

    def process(self, pcm16: bytes) -> bytes:
        """Level a chunk of mono PCM16 (any length, an even number of bytes)."""
        x = np.frombuffer(pcm16, dtype="<i2").astype(np.float32)
        y = np.empty_like(x)
        for start in range(0, x.size, self._block):
            y[start : start + self._block] = self._level_block(x[start : start + self._block])
        np.clip(np.rint(y, out=y), -32768, 32767, out=y)
        return y.astype("<i2").tobytes()

    def _level_block(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        power = float(np.dot(x, x)) / x.size
        if x.size * 4 >= self._block and power > _GATE_POWER:  # a tail < 2.5 ms is too short
            self._track(power)
        wanted_db = self._level_gain_db()
        peak = float(np.abs(x).max())  # process() never passes an empty block
        if peak * db_to_gain(wanted_db) > self._ceiling:
            wanted_db = 20 * math.log10(self._ceiling / peak)
        start_db = self._gain_db
        self._gain_db = min(wanted_db, start_db + self._release_db)
        ramp = np.full(x.size, db_to_gain(self._gain_db), dtype=np.float32)
        n = x.size if self._gain_db > start_db else min(x.size, self._attack)
        ramp[:n] = np.linspace(db_to_gain(start_db), ramp[0], n, endpoint=False)
        y: npt.NDArray[np.float32] = x * ramp
        # A ramp down can leave its first samples above the ceiling (a steep onset): those few
        # are held at the ceiling.
        return np.clip(y, -self._ceiling, self._ceiling, out=y)

    def _track(self, power: float) -> None:
        """Running mean of speech power: a plain mean until one time constant of speech has
        been heard (a quick, unbiased first estimate), then an exponential average."""
        self._speech_blocks += 1
        weight = 1 / min(self._speech_blocks, self._blocks_per_tc)
        self._mean_power += weight * (power - self._mean_power)

    def _level_gain_db(self) -> float:
        level = self.speech_level_dbfs
        if level is None:
            return 0.0
        return min(self._max_gain_db, max(self._min_gain_db, self.target_dbfs - level))
