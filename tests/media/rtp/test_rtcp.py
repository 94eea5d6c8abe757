"""RTCP SR/RR/SDES/BYE: round trips, malformed compounds, fuzzing, and A.3/A.8 statistics."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    RtcpUnknown,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_compound,
    ntp_middle32,
    parse_rtcp,
)
from media.rtp.stats import ReceptionStats

u32 = st.integers(0, 0xFFFFFFFF)
blocks = st.builds(
    ReportBlock,
    u32,
    st.integers(0, 255),
    st.integers(-(1 << 23), (1 << 23) - 1),
    u32,
    u32,
    u32,
    u32,
)
block_lists = st.lists(blocks, max_size=31).map(tuple)
rtcp_packets: st.SearchStrategy[RtcpPacket] = st.one_of(
    st.builds(SenderReport, u32, st.integers(0, (1 << 64) - 1), u32, u32, u32, block_lists),
    st.builds(ReceiverReport, u32, block_lists),
    st.builds(
        SourceDescription,
        st.lists(
            st.builds(
                SdesChunk,
                u32,
                st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=40)), max_size=4).map(
                    tuple
                ),
            ),
            max_size=4,
        ).map(tuple),
    ),
    st.builds(Bye, st.lists(u32, max_size=31).map(tuple), st.binary(max_size=255)),
    st.builds(
        RtcpUnknown,
        st.integers(204, 223),
        st.integers(0, 31),
        st.integers(0, 8).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
    ),
)


@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_compound_round_trip(packets: list[RtcpPacket]) -> None:
    assert parse_rtcp(build_compound(packets)) == packets


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_rtcp_error(data: bytes) -> None:
    try:
        packets = parse_rtcp(data)
    except RtcpError:
        return
    assert len(packets) >= 1  # a datagram that parses holds at least one packet


def _sr_header(count: int, words: int, first: int = 0x80) -> bytes:
    return struct.pack("!BBH", first | count, 200, words)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\xc8", "too_short"),
        (struct.pack("!BBH", 0x40, 200, 0), "bad_version"),
        (struct.pack("!BBH", 0x80, 100, 0), "bad_packet_type"),
        (_sr_header(0, 6) + b"\0" * 8, "bad_length"),
        (_sr_header(0, 2) + b"\0" * 8, "truncated_report"),  # SR without sender info
        (_sr_header(1, 6) + b"\0" * 24, "truncated_report"),  # one block announced, none sent
        (struct.pack("!BBH", 0x81, 201, 0), "truncated_report"),
        (struct.pack("!BBH", 0xA0, 201, 1) + b"\0\0\0\0" + bytes(4), "bad_padding"),
        (struct.pack("!BBH", 0x81, 202, 1) + b"\0\0\0\1", "truncated_sdes"),
        (struct.pack("!BBH", 0x82, 203, 1) + b"\0\0\0\1", "truncated_bye"),
        (build_compound([ReceiverReport(1)]) + b"\x80\xc9", "truncated_header"),
    ],
)
def test_malformed_rtcp_is_rejected_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(RtcpError) as info:
        parse_rtcp(data)
    assert info.value.reason == reason


def test_padding_allowed_only_on_last_packet() -> None:
    rr = build_compound([ReceiverReport(7)])
    padded = bytes([rr[0] | 0x20]) + rr[1:3] + bytes([rr[3] + 1]) + rr[4:] + b"\0\0\0\4"
    assert parse_rtcp(padded) == [ReceiverReport(7)]
    with pytest.raises(RtcpError):
        parse_rtcp(padded + rr)


def test_negative_cumulative_loss_survives_the_wire() -> None:
    block = ReportBlock(1, 0, -5, 100, 3)
    (parsed,) = parse_rtcp(build_compound([ReceiverReport(2, (block,))]))
    assert isinstance(parsed, ReceiverReport) and parsed.reports[0].cumulative_lost == -5


def test_stats_count_loss_and_fraction_per_interval() -> None:
    stats = ReceptionStats(8000)
    for n in range(100):
        if n % 10 != 3:  # lose 10 of 100
            stats.on_packet(n, n * 160, arrival_ms=n * 20.0)
    block = stats.report_block(ssrc=42, now_ms=2000)
    assert block.cumulative_lost == 10
    assert block.fraction_lost == (10 << 8) // 100
    assert block.highest_seq == 99
    for n in range(100, 150):
        stats.on_packet(n, n * 160, arrival_ms=n * 20.0)
    assert stats.report_block(42, 3000).fraction_lost == 0  # nothing lost this interval


def test_jitter_zero_for_regular_stream_and_grows_with_variation() -> None:
    steady = ReceptionStats(8000)
    for n in range(200):
        steady.on_packet(n, n * 160, arrival_ms=1000 + n * 20.0)
    assert steady.jitter_units == 0
    jittery = ReceptionStats(8000)
    for n in range(200):
        jittery.on_packet(n, n * 160, arrival_ms=1000 + n * 20.0 + (15 if n % 2 else 0))
    # A.8 converges to the mean |D| = 15 ms = 120 units for alternating +-15 ms
    assert 100 < jittery.jitter_units <= 120
    assert 12 < jittery.jitter_ms <= 15


def test_lsr_and_dlsr_follow_the_last_sender_report() -> None:
    stats = ReceptionStats(8000)
    stats.on_packet(1, 160, 0.0)
    ntp = (3_900_000_000 << 32) | 0x80000000
    stats.on_sender_report(ntp, arrival_ms=1000.0)
    block = stats.report_block(5, now_ms=1500.0)
    assert block.lsr == ntp_middle32(ntp) == ((3_900_000_000 & 0xFFFF) << 16) | 0x8000
    assert block.dlsr == int(500 * 65.536)
