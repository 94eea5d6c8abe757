"""The recorded fixtures through the whole inbound path: pcap -> session -> PCM16 + DTMF.

Each output frame is located in the reference speech by exact match (the fixture speech carries
dither so that every 20 ms frame is unique), which shows order, loss and concealment exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.rtp.events import DtmfReceived, SessionEvent
from media.rtp.packet import parse_rtp
from media.rtp.pcap import read_pcap
from media.rtp.session import RtpSession, RtpSessionConfig
from tests.media.rtp.fixture_data import FIXTURES, MANIFEST, reference_index


@dataclass
class Replay:
    session: RtpSession
    frames: list[bytes]  # one per tick once playout started
    events: list[SessionEvent]
    reference_index: dict[bytes, int]
    targets_ms: list[int]  # jitter buffer target depth after each tick
    jitters_ms: list[float]  # RFC 3550 A.8 interarrival jitter after each tick


def replay(name: str) -> Replay:
    info = MANIFEST["fixtures"][name]
    capture = read_pcap((FIXTURES / name).read_bytes())
    assert capture.skipped == 0 and len(capture.datagrams) == info["packets_in_capture"]
    config = RtpSessionConfig(local_ssrc=1, payload_type=info["payload_type"])
    session = RtpSession(config)
    start_s = capture.datagrams[0].time_s
    pending = [(round((d.time_s - start_s) * 1000, 3), d) for d in capture.datagrams]
    frames: list[bytes] = []
    events: list[SessionEvent] = []
    targets_ms: list[int] = []
    jitters_ms: list[float] = []
    now_ms = 0.0
    while pending or now_ms < (capture.datagrams[-1].time_s - start_s) * 1000 + 400:
        while pending and pending[0][0] <= now_ms:
            arrival_ms, datagram = pending.pop(0)
            events += session.receive_datagram(datagram.payload, datagram.source, arrival_ms)
        frame = session.poll(now_ms)
        if frame is not None:
            frames.append(frame)
        targets_ms.append(session.jitter.target_ms)
        jitters_ms.append(session.stats.jitter_ms)
        now_ms += 20.0
    events += session.finish()
    index = reference_index(name)
    return Replay(session, frames, events, index, targets_ms, jitters_ms)


def _positions(result: Replay) -> list[int]:
    return [result.reference_index[f] for f in result.frames if f in result.reference_index]


def _digits(result: Replay) -> str:
    return "".join(e.digit for e in result.events if isinstance(e, DtmfReceived))


@pytest.mark.parametrize(
    "name", ["speech_pcmu_dtmf.pcap", "speech_pcma_dtmf.pcap", "speech_g722_dtmf.pcap"]
)
def test_clean_fixture_plays_every_frame_in_order_and_reads_digits(name: str) -> None:
    result = replay(name)
    frames = MANIFEST["fixtures"][name]["audio_frames"]
    assert _positions(result) == list(range(frames))  # bit-exact G.711 decode, in order
    assert _digits(result) == MANIFEST["digits"]
    assert all(e.duration_ms == 100 for e in result.events if isinstance(e, DtmfReceived))
    stats = result.session.jitter.stats
    assert (stats.lost, stats.late, stats.holds, stats.skips) == (0, 0, 0, 0)
    assert result.session.stats.cumulative_lost == 0
    assert result.session.stats.jitter_ms < 0.5  # event packets do not count as jitter
    assert result.session.stats.seq.cycles == 1 << 16  # the fixture wraps its sequence numbers


def test_loss_fixture_conceals_without_gaps_and_counts_loss_exactly() -> None:
    name = "speech_pcmu_loss.pcap"
    info = MANIFEST["fixtures"][name]
    result = replay(name)
    assert result.session.stats.cumulative_lost == len(info["lost_sequence_numbers"])
    block = result.session.stats.report_block(ssrc=1, now_ms=0.0)
    assert block.cumulative_lost == len(info["lost_sequence_numbers"])
    assert 0 < block.fraction_lost < 256 * 0.15
    positions = _positions(result)
    assert positions == sorted(positions)
    lost_audio = info["audio_frames"] - len(positions)
    assert 0 < lost_audio <= len(info["lost_sequence_numbers"])
    # No gaps: every lost frame became a concealed frame of full length at its place.
    assert all(len(f) == 320 for f in result.frames)  # 20 ms at 8 kHz
    assert result.session.jitter.stats.lost >= lost_audio
    assert _digits(result) == MANIFEST["digits"]  # each digit's first end packet was lost


def test_reordered_fixture_comes_out_in_order() -> None:
    name = "speech_pcmu_reorder.pcap"
    result = replay(name)
    assert _positions(result) == list(range(MANIFEST["fixtures"][name]["audio_frames"]))
    assert result.session.jitter.stats.lost == 0
    assert _digits(result) == MANIFEST["digits"]


def test_jitter_fixture_adapts_depth_and_keeps_order() -> None:
    name = "speech_pcma_jitter.pcap"
    result = replay(name)
    session = result.session
    positions = _positions(result)
    assert positions == sorted(positions)
    frames = MANIFEST["fixtures"][name]["audio_frames"]
    assert len(positions) >= frames - 10  # most frames made it despite up to 60 ms of jitter
    assert session.jitter.stats.late == 0  # the depth covered up to 60 ms of jitter
    assert max(result.targets_ms) >= 60  # the depth grew while the network was jittery
    assert result.targets_ms[-1] == session.jitter.min_depth_ms  # and shrank when it calmed
    # A.8 follows the network: mean |D| is 20 ms for U(0, 60) delays and 2.7 ms for U(0, 8).
    assert 12 < max(result.jitters_ms) < 30
    assert 1 < result.jitters_ms[-1] < 5
    assert _digits(result) == MANIFEST["digits"]


def test_fixtures_stay_small() -> None:
    total = sum(p.stat().st_size for p in [*FIXTURES.glob("*.pcap"), *FIXTURES.glob("*.wav")])
    assert total < 1_000_000


_CLEAN = read_pcap((FIXTURES / "speech_pcmu_dtmf.pcap").read_bytes()).datagrams


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.floats(0, 0.5))
def test_digits_survive_any_loss_and_reordering_once_each(seed: int, loss: float) -> None:
    rng = Random(seed)
    kept = [d for d in _CLEAN if rng.random() >= loss]
    for i in range(len(kept) - 1):  # local reordering, as a network does
        if rng.random() < 0.1:
            kept[i], kept[i + 1] = kept[i + 1], kept[i]
    session = RtpSession(RtpSessionConfig(local_ssrc=1))
    events: list[SessionEvent] = []
    for n, datagram in enumerate(kept):
        events += session.receive_datagram(datagram.payload, datagram.source, n * 20.0)
        session.poll(n * 20.0)
    events += session.finish()
    digits = [e.digit for e in events if isinstance(e, DtmfReceived)]
    pressed = {}
    for datagram in kept:
        packet = parse_rtp(datagram.payload)
        if packet.payload_type == 101:
            pressed[packet.timestamp] = "0123456789*#"[packet.payload[0]]
    assert digits == list(pressed.values())  # every press with a surviving packet, once, in order
