"""RFC 3550 packet parsing: round trips, every malformed case, and fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.rtp.packet import HeaderExtension, RtpError, RtpPacket, is_rtcp, parse_rtp

packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(
        HeaderExtension,
        st.integers(0, 0xFFFF),
        st.integers(0, 8).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
    ),
    padding_bytes=st.integers(0, 255),
)


@given(packets)
def test_build_parse_round_trip(packet: RtpPacket) -> None:
    assert parse_rtp(packet.serialize()) == packet


@given(st.binary(max_size=120))
def test_random_bytes_raise_only_rtp_error(data: bytes) -> None:
    try:
        packet = parse_rtp(data)
    except RtpError:
        return
    assert packet.serialize() == data or packet.padding_bytes  # padding contents are not kept


def test_known_pcmu_packet() -> None:
    header = bytes.fromhex("80 80 1234 000000a0 deadbeef")  # marker set, PT 0
    packet = parse_rtp(header + b"\xff" * 160)
    assert packet.marker and packet.payload_type == 0
    assert (packet.sequence_number, packet.timestamp, packet.ssrc) == (0x1234, 160, 0xDEADBEEF)
    assert len(packet.payload) == 160


def _header(first: int, second: int = 0) -> bytes:
    return struct.pack("!BBHII", first, second, 1, 2, 3)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too_short"),
        (b"\x80" * 11, "too_short"),
        (_header(0x40) + b"x", "bad_version"),  # version 1
        (_header(0xC0), "bad_version"),  # version 3
        (_header(0x83) + b"\0" * 8, "truncated_csrc"),  # 3 CSRCs, room for 2
        (_header(0x90) + b"\0\0", "truncated_extension"),
        (_header(0x90) + b"\xbe\xde\x00\x02" + b"\0" * 4, "truncated_extension"),
        (_header(0xA0) + b"abc\x00", "bad_padding"),  # padding count zero
        (_header(0xA0) + b"ab\x05", "bad_padding"),  # padding longer than the payload
    ],
)
def test_malformed_packets_are_rejected_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError) as info:
        parse_rtp(data)
    assert info.value.reason == reason


def test_padding_and_extension_are_removed_from_payload() -> None:
    data = _header(0xB1) + b"\0\0\0\x09" + b"\xbe\xde\x00\x01" + b"1234" + b"voice" + b"\0\0\x03"
    packet = parse_rtp(data)
    assert packet.csrc == (9,)
    assert packet.extension == HeaderExtension(0xBEDE, b"1234")
    assert packet.payload == b"voice"
    assert packet.padding_bytes == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"payload_type": 128},
        {"sequence_number": 65536},
        {"timestamp": -1},
        {"csrc": tuple(range(16))},
        {"extension": HeaderExtension(1, b"abc")},
        {"padding_bytes": 256},
    ],
)
def test_building_invalid_packets_is_refused(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"payload_type": 0, "sequence_number": 0, "timestamp": 0, "ssrc": 1}
    with pytest.raises(RtpError):
        RtpPacket(**(base | kwargs))  # type: ignore[arg-type]


def test_rtcp_demultiplexing_by_payload_type_range() -> None:
    assert is_rtcp(bytes([0x80, 200]))  # SR
    assert is_rtcp(bytes([0x81, 201]))  # RR
    assert not is_rtcp(bytes([0x80, 0]))  # PCMU
    assert not is_rtcp(bytes([0x80, 0x80 | 101]))  # telephone-event with marker (229)
    assert not is_rtcp(b"\x80")
