"""Generate the RTP fixtures in this folder: speech in PCMU/PCMA with DTMF, and impaired copies.

Run from the repository root: ``.venv/bin/python rtp_fixtures/make_fixtures.py`` (needs the
Debian package ``espeak-ng``). Everything is deterministic for a given espeak-ng version: the
network impairments use fixed random seeds. The packets are built by callbridge's own RTP session
(``media/rtp/session.py``), then delayed, dropped and reordered here as a network would, and
written as Ethernet/IPv4/UDP pcap that Wireshark opens. ``manifest.json`` records, per fixture,
what a receiver must find (digits, lost sequence numbers), which the tests check.
"""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from media.rtp.codec import PT_G722, PT_PCMA, PT_PCMU, make_codec
from media.rtp.packet import parse_rtp
from media.rtp.pcap import UdpDatagram, write_pcap
from media.rtp.session import RtpSession, RtpSessionConfig

HERE = Path(__file__).resolve().parent
TEXT = "Hello, I would like to check the balance of my account, please."
DIGITS = "42#"
RATE_HZ = 8000
FRAME_SAMPLES = 160
SENDER = ("192.0.2.10", 40000)  # RFC 5737 documentation addresses
RECEIVER = ("192.0.2.1", 20000)
EPOCH_S = 1_764_000_000.0
LATENCY_MS = 30.0


def synthesise_speech(rate_hz: int = RATE_HZ) -> np.ndarray:
    """espeak-ng at 22.05 kHz -> PCM16 at ``rate_hz``, -20 dBFS RMS, faint dither, 0.3 s lead-in."""
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav_path), TEXT], check=True
        )
        with wave.open(str(wav_path)) as wav:
            espeak_hz = wav.getframerate()
            samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float64)
    speech = soxr.resample(samples, espeak_hz, rate_hz, quality="VHQ")
    speech *= (0.1 * 32768) / np.sqrt(np.mean(speech**2))
    # Dither at -66 dBFS makes every frame distinct, so tests can find each frame's place.
    rng = np.random.default_rng(rate_hz // RATE_HZ)
    lead_in = np.zeros(int(0.3 * rate_hz))
    signal = np.concatenate([lead_in, speech, np.zeros(int(0.2 * rate_hz))])
    signal += rng.normal(0, 16, len(signal))
    frame_samples = rate_hz * 20 // 1000
    signal = signal[: len(signal) // frame_samples * frame_samples]
    return np.clip(np.round(signal), -32768, 32767).astype("<i2")


@dataclass(frozen=True)
class Sent:
    send_ms: float
    data: bytes


def packetize(pcm16: np.ndarray, payload_type: int) -> list[Sent]:
    """20 ms ticks; the digits are pressed after the speech, replacing audio like a phone does."""
    session = RtpSession(
        RtpSessionConfig(
            local_ssrc=0x5EED0000 | payload_type,
            payload_type=payload_type,
            initial_seq=65500,  # wraps to 0 inside the fixture, on purpose
            initial_timestamp=0xFFFF0000,
        )
    )
    frame_samples = session.rate_hz * 20 // 1000
    frames = [pcm16[i : i + frame_samples].tobytes() for i in range(0, len(pcm16), frame_samples)]
    silence = bytes(2 * frame_samples)
    out: list[Sent] = []
    tick = 0
    for frame in frames:
        out.extend(Sent(tick * 20.0, p) for p in session.send_audio(frame))
        tick += 1
    session.send_dtmf(DIGITS, duration_ms=100)
    while session.dtmf_pending:
        out.extend(Sent(tick * 20.0, p) for p in session.send_audio(silence))
        tick += 1
    for _ in range(10):
        out.extend(Sent(tick * 20.0, p) for p in session.send_audio(silence))
        tick += 1
    return out


def impair(sent: list[Sent], kind: str) -> tuple[list[tuple[float, bytes]], list[int]]:
    """Apply a network impairment; returns (arrival_ms, data) in arrival order and lost seqs."""
    rng = random.Random(kind)
    arrivals: list[tuple[float, bytes]] = []
    lost: list[int] = []
    ended: set[int] = set()  # telephone-events whose first end packet has gone by
    for index, packet in enumerate(sent):
        rtp = parse_rtp(packet.data)
        seq = rtp.sequence_number
        arrival = packet.send_ms + LATENCY_MS
        first_end = rtp.payload_type == 101 and rtp.payload[1] & 0x80 and rtp.timestamp not in ended
        if first_end:
            ended.add(rtp.timestamp)
        if kind == "loss" and (rng.random() < 0.05 or 60 <= index < 63 or first_end):
            lost.append(seq)  # 5% random loss, a burst of three, each digit's first end packet
            continue
        if kind == "reorder" and index % 17 == 5:
            arrival += 25.0  # arrives after the next packet
        if kind == "jitter":
            arrival += rng.uniform(0, 60) if index < len(sent) * 2 // 3 else rng.uniform(0, 8)
        arrivals.append((arrival, packet.data))
    arrivals.sort(key=lambda item: item[0])
    return arrivals, lost


FIXTURES = {
    "speech_pcmu_dtmf.pcap": (PT_PCMU, "clean"),
    "speech_pcma_dtmf.pcap": (PT_PCMA, "clean"),
    "speech_pcmu_loss.pcap": (PT_PCMU, "loss"),
    "speech_pcmu_reorder.pcap": (PT_PCMU, "reorder"),
    "speech_pcma_jitter.pcap": (PT_PCMA, "jitter"),
    "speech_g722_dtmf.pcap": (PT_G722, "clean"),
}
REFERENCES = {8000: "speech_8k.wav", 16000: "speech_16k.wav"}


def write_wav(path: Path, pcm16: np.ndarray, rate_hz: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate_hz)
        wav.writeframes(pcm16.tobytes())


def main() -> None:
    speech = {rate_hz: synthesise_speech(rate_hz) for rate_hz in REFERENCES}
    for rate_hz, name in REFERENCES.items():
        write_wav(HERE / name, speech[rate_hz], rate_hz)
    manifest: dict[str, object] = {
        "text": TEXT,
        "digits": DIGITS,
        "telephone_event_pt": 101,
        "sender": list(SENDER),
        "receiver": list(RECEIVER),
    }
    fixtures: dict[str, object] = {}
    for name, (payload_type, kind) in FIXTURES.items():
        rate_hz = make_codec(payload_type).rate_hz
        pcm16 = speech[rate_hz]
        sent = packetize(pcm16, payload_type)
        arrivals, lost = impair(sent, kind)
        datagrams = [
            UdpDatagram(EPOCH_S + arrival_ms / 1000, SENDER, RECEIVER, data)
            for arrival_ms, data in arrivals
        ]
        (HERE / name).write_bytes(write_pcap(datagrams))
        fixtures[name] = {
            "payload_type": payload_type,
            "reference": REFERENCES[rate_hz],
            "impairment": kind,
            "packets_sent": len(sent),
            "packets_in_capture": len(arrivals),
            "lost_sequence_numbers": lost,
            "audio_frames": len(pcm16) // (rate_hz // 50),  # 20 ms frames
        }
    manifest["fixtures"] = fixtures
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
