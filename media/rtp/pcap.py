"""Classic libpcap capture files of UDP over IPv4: read and write, for RTP fixtures and replay.

Fixtures in ``rtp_fixtures/`` are pcap so that Wireshark and tcpdump open them ("Decode As RTP"),
and so that captures taken from real peers can be dropped in beside the generated ones. Only what
RTP needs is decoded: Ethernet (with one optional 802.1Q tag) or raw IPv4, then UDP; anything
else in a capture is skipped and counted, while a damaged file raises :class:`PcapError`.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_VLAN = 0x8100
_IPPROTO_UDP = 17
_MAX_RECORD_BYTES = 262_144


class PcapError(ValueError):
    """The bytes are not a pcap file we can read (bad magic, truncated record)."""


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    time_s: float  # capture time, seconds since the epoch
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


@dataclass(frozen=True, slots=True)
class Capture:
    datagrams: list[UdpDatagram]
    skipped: int  # records that were not UDP over IPv4


def _udp_from_ipv4(packet: bytes) -> tuple[str, int, str, int, bytes] | None:
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header_bytes = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    fragment = struct.unpack_from("!H", packet, 6)[0]
    if packet[9] != _IPPROTO_UDP or header_bytes < 20 or fragment & 0x3FFF:
        return None  # not UDP, or a fragment (RTP never needs reassembly at these sizes)
    end = min(total, len(packet))
    if header_bytes + 8 > end:
        return None
    src = str(ipaddress.IPv4Address(packet[12:16]))
    dst = str(ipaddress.IPv4Address(packet[16:20]))
    sport, dport, udp_len = struct.unpack_from("!HHH", packet, header_bytes)
    if udp_len < 8 or header_bytes + udp_len > end:
        return None
    return src, sport, dst, dport, packet[header_bytes + 8 : header_bytes + udp_len]


def _ipv4_of_frame(linktype: int, frame: bytes) -> bytes | None:
    if linktype == LINKTYPE_RAW:
        return frame
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    offset = 14
    if ethertype == _ETHERTYPE_VLAN and len(frame) >= 18:
        ethertype = struct.unpack_from("!H", frame, 16)[0]
        offset = 18
    return frame[offset:] if ethertype == _ETHERTYPE_IPV4 else None


def read_pcap(data: bytes) -> Capture:
    """Decode a whole capture (fixtures are small; read the file, then call this)."""
    if len(data) < 24:
        raise PcapError(f"{len(data)} bytes is shorter than the pcap header")
    for order in ("<", ">"):
        (magic,) = struct.unpack_from(order + "I", data)
        if magic in (MAGIC_US, MAGIC_NS):
            break
    else:
        raise PcapError("not a classic pcap file (pcapng is not supported)")
    divisor = 1e9 if magic == MAGIC_NS else 1e6
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    if linktype not in (LINKTYPE_ETHERNET, LINKTYPE_RAW):
        raise PcapError(f"link type {linktype} is not Ethernet or raw IPv4")
    record = struct.Struct(order + "IIII")
    datagrams: list[UdpDatagram] = []
    skipped = 0
    offset = 24
    while offset < len(data):
        if offset + record.size > len(data):
            raise PcapError(f"truncated record header at byte {offset}")
        seconds, fraction, captured, _original = record.unpack_from(data, offset)
        offset += record.size
        if captured > _MAX_RECORD_BYTES or offset + captured > len(data):
            raise PcapError(f"record of {captured} bytes at byte {offset} runs past the file")
        frame = data[offset : offset + captured]
        offset += captured
        ipv4 = _ipv4_of_frame(linktype, frame)
        udp = _udp_from_ipv4(ipv4) if ipv4 is not None else None
        if udp is None:
            skipped += 1
            continue
        src, sport, dst, dport, payload = udp
        datagrams.append(
            UdpDatagram(seconds + fraction / divisor, (src, sport), (dst, dport), payload)
        )
    return Capture(datagrams, skipped)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(datagram: UdpDatagram, ident: int) -> bytes:
    src_ip = ipaddress.IPv4Address(datagram.source[0]).packed
    dst_ip = ipaddress.IPv4Address(datagram.destination[0]).packed
    udp_len = 8 + len(datagram.payload)
    udp = struct.pack("!HHHH", datagram.source[1], datagram.destination[1], udp_len, 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0xB8, 20 + udp_len, ident & 0xFFFF, 0x4000, 64, _IPPROTO_UDP, 0,
        src_ip, dst_ip,
    )  # fmt: skip
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    ethernet = bytes.fromhex("020000000002020000000001") + struct.pack("!H", _ETHERTYPE_IPV4)
    return ethernet + ip + udp + datagram.payload


def write_pcap(datagrams: list[UdpDatagram]) -> bytes:
    """Encode datagrams as an Ethernet pcap with microsecond timestamps (UDP checksum 0)."""
    parts = [struct.pack("<IHHiIII", MAGIC_US, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET)]
    for ident, datagram in enumerate(datagrams):
        frame = _frame(datagram, ident)
        micros = round(datagram.time_s * 1e6)
        seconds, fraction = divmod(micros, 1_000_000)
        parts.append(struct.pack("<IIII", seconds, fraction, len(frame), len(frame)))
        parts.append(frame)
    return b"".join(parts)
