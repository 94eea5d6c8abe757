"""Shared access to ``rtp_fixtures/``: the manifest and the reference speech as decoded."""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any

from media.rtp.codec import make_codec

FIXTURES = Path(__file__).resolve().parents[3] / "rtp_fixtures"
MANIFEST: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text())


def reference_frames(name: str) -> list[bytes]:
    """A fixture's speech in 20 ms frames, as its receiver must decode them, bit for bit.

    The codec runs over the frames in order, as the sender's did, so that G.722's state (ADPCM)
    evolves exactly as in the capture.
    """
    info = MANIFEST["fixtures"][name]
    with wave.open(str(FIXTURES / info["reference"])) as wav:
        pcm16 = wav.readframes(wav.getnframes())
    encoder, decoder = make_codec(info["payload_type"]), make_codec(info["payload_type"])
    frame_bytes = 2 * encoder.rate_hz // 50
    return [
        decoder.decode(encoder.encode(pcm16[i : i + frame_bytes]))
        for i in range(0, len(pcm16), frame_bytes)
    ]


def reference_index(name: str) -> dict[bytes, int]:
    """Frame bytes -> position; the fixture's dither makes every frame distinct."""
    frames = reference_frames(name)
    index = {frame: i for i, frame in enumerate(frames)}
    assert len(index) == len(frames), "fixture speech frames should all be distinct"
    return index
