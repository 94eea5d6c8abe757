"""Payload codecs: G.711 is exact per frame, G.722 is stateful, wideband, and 8 kHz on the clock."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from media.rtp.codec import PT_G722, PT_PCMA, PT_PCMU, G722Codec, make_codec
from media.rtp.packet import parse_rtp
from media.rtp.session import RtpSession, RtpSessionConfig


def _tone_16k(hz: float, frames: int) -> bytes:
    n = 320 * frames
    return struct.pack(
        f"<{n}h", *(int(9000 * math.sin(2 * math.pi * hz * i / 16000)) for i in range(n))
    )


def _snr_db(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Best SNR over small delays (G.722's QMF filters delay the signal by a few samples)."""
    best = -math.inf
    for delay in range(0, 40):
        ref = reference[: len(reference) - delay]
        out = decoded[delay : delay + len(ref)]
        noise = np.sum((out - ref) ** 2)
        best = max(best, 10 * math.log10(np.sum(ref**2) / max(noise, 1e-9)))
    return best


def test_g722_round_trip_keeps_wideband_audio() -> None:
    encoder, decoder = G722Codec(), G722Codec()
    pcm16 = _tone_16k(5000, 50)  # 5 kHz: above what 8 kHz G.711 can carry at all
    decoded = b""
    for i in range(0, len(pcm16), 640):
        payload = encoder.encode(pcm16[i : i + 640])
        assert len(payload) == 160  # 64 kbit/s: 4 bits per 16 kHz sample
        decoded += decoder.decode(payload)
    assert len(decoded) == len(pcm16)
    ref = np.frombuffer(pcm16, "<i2").astype(float)[3200:]
    out = np.frombuffer(decoded, "<i2").astype(float)[3200:]
    assert _snr_db(ref, out) > 20


def test_make_codec_rates_and_refusal() -> None:
    assert make_codec(PT_PCMU).rate_hz == make_codec(PT_PCMA).rate_hz == 8000
    assert make_codec(PT_G722).rate_hz == 16000
    with pytest.raises(ValueError):
        make_codec(18)


def test_g722_session_sends_160_timestamp_units_per_20_ms_and_decodes_16k() -> None:
    sender = RtpSession(RtpSessionConfig(local_ssrc=1, payload_type=PT_G722))
    receiver = RtpSession(RtpSessionConfig(local_ssrc=2, payload_type=PT_G722))
    assert sender.rate_hz == 16000
    pcm16 = _tone_16k(1000, 30)
    packets = [sender.send_audio(pcm16[i : i + 640])[0] for i in range(0, len(pcm16), 640)]
    parsed = [parse_rtp(p) for p in packets]
    assert [p.timestamp for p in parsed[:3]] == [0, 160, 320]  # RFC 3551 4.5.2
    assert all(p.payload_type == PT_G722 and len(p.payload) == 160 for p in parsed)
    frames = []
    for n, data in enumerate(packets):
        receiver.receive_datagram(data, ("192.0.2.1", 5004), n * 20.0)
        frame = receiver.poll(n * 20.0)
        if frame is not None:
            frames.append(frame)
    assert len(frames) == 28 and all(len(f) == 640 for f in frames)
    ref = np.frombuffer(pcm16, "<i2").astype(float)[3200 : 320 * 28]
    out = np.frombuffer(b"".join(frames), "<i2").astype(float)[3200:]
    assert _snr_db(ref, out) > 20
    assert receiver.jitter.stats.lost == 0
