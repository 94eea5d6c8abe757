"""Audio units and the constants every leg shares: one place for 20 ms and the link's 16 kHz."""

from __future__ import annotations

FRAME_MS = 20
"""Telephony frame duration: AudioSocket, RTP ptime and the agent link all use 20 ms."""

LINK_RATE_HZ = 16_000
"""Sample rate of audio on the agent link (ARCHITECTURE.md)."""

TELEPHONY_RATE_HZ = 8_000
"""Narrowband rate of G.711 and AudioSocket's default slin."""

BYTES_PER_SAMPLE = 2
"""PCM16: signed 16-bit little-endian, mono."""


def samples_per_frame(rate_hz: int, frame_ms: int = FRAME_MS) -> int:
    """Samples in one frame of ``frame_ms`` at ``rate_hz`` (44.1 kHz gives 882 for 20 ms)."""
    return rate_hz * frame_ms // 1000


def pcm16_bytes_per_frame(rate_hz: int, frame_ms: int = FRAME_MS) -> int:
    """Bytes of mono PCM16 in one frame."""
    return samples_per_frame(rate_hz, frame_ms) * BYTES_PER_SAMPLE


def pcm16_duration_ms(num_bytes: int, rate_hz: int) -> float:
    """Duration in milliseconds of ``num_bytes`` of mono PCM16 at ``rate_hz``."""
    return num_bytes / BYTES_PER_SAMPLE * 1000 / rate_hz


def pcm16_bytes_for_ms(duration_ms: float, rate_hz: int) -> int:
    """Whole-sample byte count of ``duration_ms`` of mono PCM16 at ``rate_hz``."""
    return int(duration_ms * rate_hz / 1000) * BYTES_PER_SAMPLE
