"""RTP audio payload codecs, one object per call and direction: G.711 (PCMU/PCMA) and G.722.

G.711 is stateless (``media/codecs/g711.py``); G.722 is ADPCM and keeps state between frames, so
every stream needs its own encoder or decoder (Sippy's ``G722`` package, libg722: bit-exact ITU
G.722 at 64 kbit/s). Note RFC 3551 4.5.2: G.722 samples at 16 kHz but its RTP clock runs at
8 kHz, so a 20 ms packet advances the timestamp by 160 while carrying 320 samples.
"""

from __future__ import annotations

import array
from typing import Protocol

import G722  # type: ignore[import-not-found]  # no stubs; C extension

from media.codecs.g711 import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, ulaw_to_pcm16

PT_PCMU = 0
PT_PCMA = 8
PT_G722 = 9
RTP_CLOCK_HZ = 8000  # for all three, G.722 included (RFC 3551 4.5.2)


class PayloadCodec(Protocol):
    payload_type: int
    rate_hz: int  # sample rate of the PCM16 side

    def decode(self, payload: bytes) -> bytes: ...

    def encode(self, pcm16: bytes) -> bytes: ...


class G711Codec:
    rate_hz = 8000

    def __init__(self, payload_type: int) -> None:
        self.payload_type = payload_type
        ulaw = payload_type == PT_PCMU
        self._decode = ulaw_to_pcm16 if ulaw else alaw_to_pcm16
        self._encode = pcm16_to_ulaw if ulaw else pcm16_to_alaw

    def decode(self, payload: bytes) -> bytes:
        return self._decode(payload)

    def encode(self, pcm16: bytes) -> bytes:
        return self._encode(pcm16)


class G722Codec:
    payload_type = PT_G722
    rate_hz = 16000

    def __init__(self) -> None:
        self._decoder = G722.G722(self.rate_hz, 64000)
        self._encoder = G722.G722(self.rate_hz, 64000)

    def decode(self, payload: bytes) -> bytes:
        samples: array.array[int] = self._decoder.decode(payload)
        return samples.tobytes()

    def encode(self, pcm16: bytes) -> bytes:
        encoded: bytes = self._encoder.encode(array.array("h", pcm16))
        return encoded


def make_codec(payload_type: int) -> PayloadCodec:
    if payload_type in (PT_PCMU, PT_PCMA):
        return G711Codec(payload_type)
    if payload_type == PT_G722:
        return G722Codec()
    raise ValueError(f"payload type {payload_type} is not PCMU (0), PCMA (8) or G.722 (9)")
