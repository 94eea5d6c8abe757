"""pcap reading and writing: round trips, foreign layouts, damaged files, fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.rtp.pcap import (
    LINKTYPE_RAW,
    MAGIC_NS,
    Capture,
    PcapError,
    UdpDatagram,
    read_pcap,
    write_pcap,
)

octet = st.integers(0, 255)
addresses = st.tuples(
    st.tuples(octet, octet, octet, octet).map(lambda t: ".".join(map(str, t))),
    st.integers(0, 65535),
)
datagrams = st.builds(
    UdpDatagram,
    st.integers(0, 2**32 - 1).map(lambda us: us / 1e6 + 1_700_000_000),
    addresses,
    addresses,
    st.binary(max_size=300),
)


@given(st.lists(datagrams, max_size=10))
def test_write_read_round_trip(items: list[UdpDatagram]) -> None:
    capture = read_pcap(write_pcap(items))
    assert capture.skipped == 0
    assert [(d.source, d.destination, d.payload) for d in capture.datagrams] == [
        (d.source, d.destination, d.payload) for d in items
    ]
    assert all(
        abs(a.time_s - b.time_s) < 1e-6 for a, b in zip(capture.datagrams, items, strict=True)
    )


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_pcap_error(data: bytes) -> None:
    try:
        capture = read_pcap(data)
    except PcapError:
        return
    assert isinstance(capture, Capture)


@given(st.binary(min_size=16, max_size=120))
def test_random_records_are_skipped_or_rejected(frame: bytes) -> None:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    record = struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame
    capture = read_pcap(header + record)  # a whole record never raises, whatever it holds
    assert capture.skipped + len(capture.datagrams) == 1


def _ipv4_udp(payload: bytes) -> bytes:
    ethernet_ip_udp = write_pcap([UdpDatagram(0.0, ("10.0.0.1", 1), ("10.0.0.2", 2), payload)])
    return ethernet_ip_udp[24 + 16 + 14 :]


def test_big_endian_nanosecond_raw_ip_capture() -> None:
    packet = _ipv4_udp(b"rtp!")
    header = struct.pack(">IHHiIII", MAGIC_NS, 2, 4, 0, 0, 65535, LINKTYPE_RAW)
    record = struct.pack(">IIII", 10, 500_000_000, len(packet), len(packet)) + packet
    (datagram,) = read_pcap(header + record).datagrams
    assert datagram.time_s == 10.5 and datagram.payload == b"rtp!"
    assert datagram.source == ("10.0.0.1", 1)


def test_vlan_tagged_frame_and_non_udp_records() -> None:
    data = write_pcap([UdpDatagram(1.0, ("10.0.0.1", 5), ("10.0.0.2", 6), b"x")])
    frame = data[40:]
    tagged = frame[:12] + b"\x81\x00\x00\x05" + frame[12:]
    arp = frame[:12] + b"\x08\x06" + bytes(28)
    tcp = bytearray(frame)
    tcp[14 + 9] = 6
    records = b"".join(
        struct.pack("<IIII", 1, 0, len(f), len(f)) + bytes(f) for f in (tagged, arp, tcp)
    )
    capture = read_pcap(data[:24] + records)
    assert [d.payload for d in capture.datagrams] == [b"x"]
    assert capture.skipped == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than the pcap header"),
        (b"\x0a\x0d\x0d\x0a" + bytes(20), "pcapng is not supported"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 113), "link type 113"),
        (write_pcap([UdpDatagram(1.0, ("1.2.3.4", 1), ("1.2.3.4", 2), b"abc")])[:-1], "runs past"),
        (write_pcap([]) + b"\0" * 10, "truncated record header"),
        (write_pcap([]) + struct.pack("<IIII", 0, 0, 10**6, 10**6), "runs past"),
    ],
)
def test_damaged_files_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(PcapError, match=message):
        read_pcap(data)
