"""The per-call RTP session: latching, spoofing, bad input, DTMF both ways, audio both ways."""

from __future__ import annotations

import math
import struct
import wave

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.codecs.g711 import pcm16_to_alaw, pcm16_to_ulaw
from media.rtp.codec import make_codec
from media.rtp.dtmf import DtmfDecoder, DtmfEncoder, DtmfError, TelephoneEvent
from media.rtp.events import DtmfReceived, PeerBye, SourceChanged, SourceLatched
from media.rtp.packet import RtpPacket, parse_rtp
from media.rtp.rtcp import ReceiverReport, SenderReport, SourceDescription, parse_rtcp
from media.rtp.session import RtpSession, RtpSessionConfig
from tests.media.rtp.fixture_data import FIXTURES

PEER = ("192.0.2.10", 4000)
SPOOF = ("198.51.100.7", 4000)


def _tone(n: int) -> bytes:
    return struct.pack("<160h", *(int(8000 * math.sin((n * 160 + i) / 10)) for i in range(160)))


def _rtp(seq: int, pt: int = 0, payload: bytes | None = None, ssrc: int = 77) -> bytes:
    if payload is None:
        payload = pcm16_to_ulaw(_tone(seq))
    return RtpPacket(pt, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc, payload).serialize()


def test_first_valid_packet_latches_and_spoofed_source_is_rejected() -> None:
    session = RtpSession(RtpSessionConfig(local_ssrc=1, remote=("203.0.113.1", 5000)))
    assert session.remote == ("203.0.113.1", 5000)
    assert session.receive_datagram(b"junk", SPOOF, 0.0) == []  # junk never latches
    events = session.receive_datagram(_rtp(1), PEER, 0.0)
    assert events == [SourceLatched(PEER, 77)]
    assert session.remote == PEER
    assert session.receive_datagram(_rtp(2, ssrc=99), SPOOF, 20.0) == []
    assert session.counters.rejected["spoofed_source"] == 1
    assert session.remote_ssrc == 77 and session.counters.packets_in == 1
    session.relatch()
    assert session.receive_datagram(_rtp(3), SPOOF, 40.0) == [SourceLatched(SPOOF, 77)]


def test_wrong_payload_type_and_malformed_packets_are_counted() -> None:
    session = RtpSession(RtpSessionConfig(local_ssrc=1))
    session.receive_datagram(_rtp(1, pt=8), PEER, 0.0)  # PCMA not negotiated
    session.receive_datagram(b"\x40" + bytes(20), PEER, 0.0)
    session.receive_datagram(_rtp(2, pt=101, payload=b"\x01"), PEER, 0.0)  # short event
    assert session.counters.rejected["wrong_payload_type"] == 1
    assert session.counters.rejected["malformed_bad_version"] == 1
    assert session.counters.rejected["malformed_telephone_event"] == 1


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_fuzzed_datagrams_never_raise(datagrams: list[bytes]) -> None:
    session = RtpSession(RtpSessionConfig(local_ssrc=1))
    for n, data in enumerate(datagrams):
        session.receive_datagram(data, PEER, n * 20.0)
        session.poll(n * 20.0)
    assert session.counters.packets_in <= len(datagrams)


def test_audio_in_decodes_pcma_in_order() -> None:
    session = RtpSession(RtpSessionConfig(local_ssrc=1, payload_type=8))
    frames = []
    for n in range(30):
        session.receive_datagram(_rtp(n, pt=8, payload=pcm16_to_alaw(_tone(n))), PEER, n * 20.0)
        pcm16 = session.poll(n * 20.0)
        if pcm16 is not None:
            frames.append(pcm16)
    assert len(frames) == 28  # 40 ms of initial depth, then one frame per tick
    for n, pcm16 in enumerate(frames):
        error = np.frombuffer(pcm16, "<i2") - np.frombuffer(_tone(n), "<i2").astype(float)
        assert np.sqrt(np.mean(error**2)) < 200  # G.711 quantisation only


def test_ssrc_change_from_latched_source_resets_the_stream() -> None:
    session = RtpSession(RtpSessionConfig(local_ssrc=1))
    for n in range(5):
        session.receive_datagram(_rtp(n), PEER, n * 20.0)
    events = session.receive_datagram(_rtp(40000, ssrc=555), PEER, 100.0)
    assert events == [SourceChanged(77, 555)]
    assert session.counters.ssrc_changes == 1
    assert session.stats.seq.received == 1


def test_inbound_dtmf_reports_one_digit_and_fills_silence() -> None:
    session = RtpSession(RtpSessionConfig(local_ssrc=1))
    for n in range(5):
        session.receive_datagram(_rtp(n), PEER, n * 20.0)
    encoder = DtmfEncoder("8", 5 * 160, 100)
    seq, got = 5, []
    while not encoder.done:
        for p in encoder.next_packets():
            data = RtpPacket(101, seq, p.timestamp, 77, p.payload, marker=p.marker).serialize()
            got += session.receive_datagram(data, PEER, seq * 20.0)
            seq += 1
    assert got == [DtmfReceived("8", 100)]
    statuses = [session.poll(t * 20.0) for t in range(2, 14)]
    assert all(frame is not None for frame in statuses)
    assert session.jitter.stats.lost == 0


def test_outbound_audio_packets_have_running_seq_timestamp_and_marker() -> None:
    config = RtpSessionConfig(local_ssrc=5, initial_seq=65534, initial_timestamp=0xFFFFFF00)
    session = RtpSession(config)
    packets = [parse_rtp(p) for n in range(4) for p in session.send_audio(_tone(n))]
    assert [p.sequence_number for p in packets] == [65534, 65535, 0, 1]
    assert [p.timestamp for p in packets] == [0xFFFFFF00, 0xFFFFFFA0, 0x40, 0xE0]
    assert [p.marker for p in packets] == [True, False, False, False]
    assert all(p.ssrc == 5 and len(p.payload) == 160 for p in packets)
    short = parse_rtp(session.send_audio(b"\x01\x00" * 10)[0])
    assert len(short.payload) == 160  # padded to a whole frame


def test_outbound_dtmf_replaces_audio_and_decodes_to_the_digits() -> None:
    session = RtpSession(RtpSessionConfig(local_ssrc=5))
    session.send_dtmf("1#", duration_ms=60)
    decoder = DtmfDecoder()
    digits, audio_packets = [], 0
    ticks = 0
    while session.dtmf_pending:
        for data in session.send_audio(bytes(320)):
            packet = parse_rtp(data)
            if packet.payload_type == 101:
                digits += decoder.receive(packet.timestamp, packet.payload)
            else:
                audio_packets += 1
        ticks += 1
    assert [(d.digit, d.duration_ms) for d in digits] == [("1", 60), ("#", 60)]
    assert audio_packets == 2 * 3  # the gap after each press carries audio
    assert ticks == 2 * (3 + 3)
    with pytest.raises(DtmfError):
        session.send_dtmf("x")
    with pytest.raises(DtmfError):
        RtpSession(RtpSessionConfig(local_ssrc=1, telephone_event_pt=None)).send_dtmf("1")


def test_rtcp_reports_carry_loss_and_read_peer_reports() -> None:
    session = RtpSession(RtpSessionConfig(local_ssrc=5))
    rr = parse_rtcp(session.build_report(now_ms=0.0, ntp_timestamp=1 << 32))
    assert isinstance(rr[0], ReceiverReport) and isinstance(rr[1], SourceDescription)
    for n in range(50):
        if n != 10:
            session.receive_datagram(_rtp(n), PEER, n * 20.0)
    session.send_audio(bytes(320))
    (sr, _) = parse_rtcp(session.build_report(now_ms=1000.0, ntp_timestamp=2 << 32))
    assert isinstance(sr, SenderReport) and sr.packet_count == 1
    assert sr.reports[0].ssrc == 77 and sr.reports[0].cumulative_lost == 1
    session.receive_datagram(session.build_report(1000.0, 3 << 32), PEER, 1010.0)
    assert session.counters.rejected == {}  # our own SR parses: it is valid RTCP
    assert session.receive_datagram(b"\x80\xc9\x00\x05", PEER, 1020.0) == []
    assert session.counters.rejected["malformed_rtcp_bad_length"] == 1


def test_bad_configuration_is_refused() -> None:
    for kwargs in ({"payload_type": 18}, {"telephone_event_pt": 13}, {"ptime_ms": 25}):
        with pytest.raises(ValueError):
            RtpSessionConfig(local_ssrc=1, **kwargs)  # type: ignore[arg-type]


def test_telephone_event_payload_helper_matches_wire() -> None:
    assert TelephoneEvent(1, True, 10, 800).pack() == b"\x01\x8a\x03\x20"


def test_pause_in_sending_advances_timestamp_and_marks_talkspurt() -> None:
    session = RtpSession(RtpSessionConfig(local_ssrc=5))
    times = [0.0, 20.0, 40.0, 1040.0, 1060.0]  # the agent fell silent for one second
    packets = [parse_rtp(session.send_audio(_tone(0), now_ms=t)[0]) for t in times]
    assert [p.timestamp for p in packets] == [0, 160, 320, 320 + 50 * 160, 320 + 51 * 160]
    assert [p.marker for p in packets] == [True, False, False, True, False]
    assert [p.sequence_number for p in packets] == [0, 1, 2, 3, 4]  # no gap in sequence


def test_peer_bye_is_reported_only_for_the_latched_source() -> None:
    session = RtpSession(RtpSessionConfig(local_ssrc=5))
    peer = RtpSession(RtpSessionConfig(local_ssrc=77))
    session.receive_datagram(_rtp(1), PEER, 0.0)
    other = RtpSession(RtpSessionConfig(local_ssrc=1234))
    assert session.receive_datagram(other.build_report(0.0, 0, bye="x"), PEER, 10.0) == []
    bye = peer.build_report(0.0, 0, bye="caller hung up")
    assert session.receive_datagram(bye, PEER, 20.0) == [PeerBye("caller hung up")]


def test_comfort_noise_and_silence_suppression_play_without_gaps() -> None:
    session = RtpSession(RtpSessionConfig(local_ssrc=5))
    arrivals = [(n, _rtp(n)) for n in range(10)]
    arrivals.append((10, RtpPacket(13, 10, 1600, 77, b"\x40", marker=False).serialize()))
    # The sender then stays silent for 1 s and resumes with a marked talkspurt 60 frames later.
    for n in range(60, 70):
        packet = RtpPacket(0, n - 49, n * 160, 77, pcm16_to_ulaw(_tone(n)), marker=n == 60)
        arrivals.append((n, packet.serialize()))
    frames = []
    pending = list(arrivals)
    for tick in range(75):
        while pending and pending[0][0] <= tick:
            session.receive_datagram(pending.pop(0)[1], PEER, tick * 20.0)
        frame = session.poll(tick * 20.0)
        if frame is not None:
            frames.append(frame)
    assert all(len(f) == 320 for f in frames) and len(frames) == 73
    assert frames[10] == bytes(320)  # the comfort-noise frame plays as silence
    stats = session.jitter.stats
    assert stats.lost == 0 and stats.played == 21 and stats.underruns >= 49
    assert session.stats.cumulative_lost == 0  # sequence numbers stayed contiguous


def test_separate_port_rtcp_needs_latched_host_and_feeds_quality() -> None:
    session = RtpSession(RtpSessionConfig(local_ssrc=5))
    peer = RtpSession(RtpSessionConfig(local_ssrc=77))
    report = peer.build_report(0.0, 1 << 32)
    assert session.receive_rtcp_datagram(report, (PEER[0], PEER[1] + 1), 0.0) == []
    assert session.counters.rejected["rtcp_before_rtp"] == 1
    for n in range(3):
        session.receive_datagram(peer.send_audio(_tone(n))[0], PEER, n * 20.0)
        peer.receive_datagram(session.send_audio(_tone(n))[0], ("198.51.100.1", 5004), n * 20.0)
    session.receive_rtcp_datagram(report, (SPOOF[0], PEER[1] + 1), 60.0)
    assert session.counters.rejected["spoofed_rtcp_source"] == 1
    assert session.quality().remote_fraction_lost is None
    session.receive_rtcp_datagram(peer.build_report(60.0, 2 << 32), (PEER[0], PEER[1] + 1), 70.0)
    quality = session.quality()
    assert quality.remote_fraction_lost == 0.0 and quality.remote_jitter_ms == 0.0
    assert (quality.packets_in, quality.packets_out, quality.lost) == (3, 3, 0)
    assert session.stats.last_sr_lsr == ((2 << 32) >> 16) & 0xFFFFFFFF


@pytest.mark.parametrize(("payload_type", "packet_ms"), [(8, 30), (0, 10), (9, 30), (0, 60)])
def test_packets_longer_or_shorter_than_the_agreed_ptime_reach_the_core_whole(
    payload_type: int, packet_ms: int
) -> None:
    """Agreed 20 ms, sent otherwise (sipp's stock uac_pcap sends 30 ms PCMA): the core gets
    20 ms frames that are the sender's speech end to end, no slot left empty, no drift."""
    with wave.open(str(FIXTURES / "speech_8k.wav" if payload_type != 9 else
                       FIXTURES / "speech_16k.wav")) as w:  # fmt: skip
        speech = w.readframes(w.getnframes())
    encoder = make_codec(payload_type)
    session = RtpSession(RtpSessionConfig(local_ssrc=1, payload_type=payload_type))
    units = 8 * packet_ms  # timestamp units (8 kHz clock) per packet, G.722 included
    chunk_bytes = 2 * encoder.rate_hz * packet_ms // 1000
    packets = [encoder.encode(speech[i : i + chunk_bytes])
               for i in range(0, len(speech) - chunk_bytes + 1, chunk_bytes)]  # fmt: skip
    frames: list[bytes] = []
    for tick in range(len(packets) * packet_ms // 20 + 10):
        now = tick * 20.0
        for n in range(len(packets)):  # each sent when its audio was captured, 2 ms on the way
            if now - 20 < (n + 1) * packet_ms + 2 <= now:
                data = RtpPacket(payload_type, n, 1000 + n * units, 77, packets[n]).serialize()
                session.receive_datagram(data, PEER, (n + 1) * packet_ms + 2.0)
        frame = session.poll(now)
        if frame is not None:
            frames.append(frame)
    stats = session.jitter.stats
    assert stats.lost == stats.holds == stats.partial == stats.skips == 0
    got = b"".join(frames)[: len(packets) * chunk_bytes]
    # The reference: the same packets decoded back to back by a decoder of our own.
    decoder = make_codec(payload_type)
    assert got == b"".join(decoder.decode(p) for p in packets)


def test_an_audio_packet_over_200_ms_is_refused_and_counted() -> None:
    session = RtpSession(RtpSessionConfig(local_ssrc=1))
    session.receive_datagram(_rtp(1, payload=b"\xff" * 1601), PEER, 0.0)
    assert session.counters.rejected["packet_too_long"] == 1
    assert session.jitter.depth_ms == 0
