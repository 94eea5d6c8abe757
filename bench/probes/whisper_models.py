"""Words right and CPU per utterance of CTranslate2 Whisper models, as the agent decodes.

Every model runs through :class:`~ai_pipeline.engines.whisper_window.ShortWindowWhisper` (the
agent's short window, greedy, one thread) on the speech fixtures, three ways: at 16 kHz as
recorded; as a call hears them (16 kHz -> 8 kHz -> mu-law -> 16 kHz through the media core's
resampler and codec); and so with white noise 10 dB under the speech. The packaged tiny.en is
always in; ``--model DIR`` adds any other converted model (e.g. a larger one to weigh against
it; nothing is downloaded).

Run: ``python -m bench.probes.whisper_models --model /path/to/faster-whisper-base``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from ai_pipeline.engines.models import ModelStore
from ai_pipeline.engines.whisper_window import ShortWindowWhisper
from ai_pipeline.turnbench import SPEECH_DIR, fixture_transcripts, word_errors, words
from media.codecs.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from media.resample import StreamResampler

NOISE_SNR_DB = 10.0
SPEECH_FLOOR = 300  # |sample| above which a sample counts toward the speech's power


def as_heard_on_a_call(pcm16: bytes) -> bytes:
    down = StreamResampler(16000, 8000).process(pcm16)
    return StreamResampler(8000, 16000).process(ulaw_to_pcm16(pcm16_to_ulaw(down)))


def with_noise(pcm16: bytes, snr_db: float, seed: int) -> bytes:
    x = np.frombuffer(pcm16, np.int16).astype(np.float64)
    power = float(np.mean(x[np.abs(x) > SPEECH_FLOOR] ** 2))
    noise = np.random.default_rng(seed).standard_normal(x.size) * np.sqrt(
        power / 10 ** (snr_db / 10)
    )
    noisy: bytes = np.clip(np.rint(x + noise), -32768, 32767).astype(np.int16).tobytes()
    return noisy


CONDITIONS: dict[str, Callable[[bytes, int], bytes]] = {
    "16 kHz": lambda pcm, _: pcm,
    "call (8 kHz mu-law)": lambda pcm, _: as_heard_on_a_call(pcm),
    f"call + noise {NOISE_SNR_DB:g} dB": lambda pcm, i: as_heard_on_a_call(
        with_noise(pcm, NOISE_SNR_DB, i)
    ),
}


def _load_fixture(name: str) -> bytes:
    import wave

    with wave.open(str(SPEECH_DIR / name), "rb") as wav:
        return wav.readframes(wav.getnframes())


def evaluate(label: str, whisper: ShortWindowWhisper) -> None:
    fixtures = [(text, _load_fixture(name)) for name, text in fixture_transcripts()]
    for condition, hear in CONDITIONS.items():
        errors = total = 0
        cpu_s = 0.0
        misses = []
        for i, (text, pcm16) in enumerate(fixtures):
            audio = hear(pcm16, i)
            start = time.process_time()
            heard = whisper.transcribe(audio).text
            cpu_s += time.process_time() - start
            wrong = word_errors(words(text), words(heard))
            errors, total = errors + wrong, total + len(words(text))
            if wrong:
                misses.append(heard)
        right = 100 * (1 - errors / total)
        print(
            f"{label:<28} {condition:<22} {right:5.1f} % {cpu_s / len(fixtures) * 1e3:6.0f} ms"
            f"  {misses}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=[], help="a CTranslate2 Whisper dir")
    ns = p.parse_args()
    from faster_whisper import WhisperModel  # type: ignore[import-untyped]

    store = ModelStore()  # the agent's thread budget
    print("model                        condition              words  CPU/utt  misheard")
    evaluate("tiny.en (packaged)", store.whisper_window())
    for path in ns.model:
        model = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=1)
        evaluate(path, ShortWindowWhisper(model))


if __name__ == "__main__":
    main()
