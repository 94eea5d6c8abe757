"""RTCP sender and receiver reports, SDES and BYE: RFC 3550 section 6.4-6.6, compound per 6.1.

A compound packet is parsed into typed packets; unknown packet types (feedback, XR) are kept as
:class:`RtcpUnknown` rather than rejected, because peers send them and they must not make us drop
the reports alongside. Lengths are validated against the datagram before any field is read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TypeAlias

from media.rtp.packet import RTP_VERSION, RtpError

PT_SR = 200
PT_RR = 201
PT_SDES = 202
PT_BYE = 203
SDES_CNAME = 1
MAX_REPORT_BLOCKS = 31
_REPORT_BLOCK = struct.Struct("!IB3sIIII")
_SR_INFO = struct.Struct("!IQIII")


class RtcpError(RtpError):
    """A datagram that is not valid RTCP; ``reason`` is a short counter label."""


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """RFC 3550 6.4.1: reception quality of one source as seen by the reporter."""

    ssrc: int
    fraction_lost: int  # lost/expected since the last report, in 1/256
    cumulative_lost: int  # signed 24-bit: duplicates can make it negative
    highest_seq: int  # extended highest sequence number received (cycles << 16 | seq)
    jitter: int  # interarrival jitter in timestamp units (A.8)
    lsr: int = 0  # middle 32 bits of the NTP time of the last SR received
    dlsr: int = 0  # delay since that SR, in 1/65536 s

    def __post_init__(self) -> None:
        if not 0 <= self.fraction_lost <= 255:
            raise RtcpError("bad_report_block", f"fraction_lost {self.fraction_lost}")
        if not -(1 << 23) <= self.cumulative_lost < (1 << 23):
            raise RtcpError("bad_report_block", f"cumulative_lost {self.cumulative_lost}")
        for name in ("ssrc", "highest_seq", "jitter", "lsr", "dlsr"):
            if not 0 <= getattr(self, name) <= 0xFFFFFFFF:
                raise RtcpError("bad_report_block", f"{name} out of 32-bit range")

    def pack(self) -> bytes:
        lost = (self.cumulative_lost & 0xFFFFFF).to_bytes(3, "big")
        return _REPORT_BLOCK.pack(
            self.ssrc, self.fraction_lost, lost, self.highest_seq, self.jitter, self.lsr, self.dlsr
        )

    @classmethod
    def unpack(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, fraction, lost3, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
        lost = int.from_bytes(lost3, "big")
        if lost & 0x800000:
            lost -= 1 << 24
        return cls(ssrc, fraction, lost, highest, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int  # 64-bit NTP format: seconds since 1900 << 32 | fraction
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class SdesChunk:
    ssrc: int
    items: tuple[tuple[int, bytes], ...]  # (item type, value); CNAME is type 1


@dataclass(frozen=True, slots=True)
class SourceDescription:
    chunks: tuple[SdesChunk, ...]


@dataclass(frozen=True, slots=True)
class Bye:
    ssrcs: tuple[int, ...]
    reason: bytes = b""


@dataclass(frozen=True, slots=True)
class RtcpUnknown:
    packet_type: int
    count: int  # the 5-bit field after the padding bit (FMT for feedback packets)
    body: bytes


RtcpPacket: TypeAlias = SenderReport | ReceiverReport | SourceDescription | Bye | RtcpUnknown


def ntp_middle32(ntp_timestamp: int) -> int:
    """The LSR field: middle 32 bits of a 64-bit NTP timestamp (RFC 3550 6.4.1)."""
    return (ntp_timestamp >> 16) & 0xFFFFFFFF


def _header(packet_type: int, count: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise RtcpError("bad_length", "RTCP bodies are whole 32-bit words")
    return struct.pack("!BBH", (RTP_VERSION << 6) | count, packet_type, len(body) // 4) + body


def _check_blocks(reports: tuple[ReportBlock, ...]) -> None:
    if len(reports) > MAX_REPORT_BLOCKS:
        raise RtcpError("too_many_reports", str(len(reports)))


def build_sender_report(sr: SenderReport) -> bytes:
    _check_blocks(sr.reports)
    info = _SR_INFO.pack(
        sr.ssrc, sr.ntp_timestamp, sr.rtp_timestamp, sr.packet_count, sr.octet_count
    )
    body = info + b"".join(block.pack() for block in sr.reports)
    return _header(PT_SR, len(sr.reports), body)


def build_receiver_report(rr: ReceiverReport) -> bytes:
    _check_blocks(rr.reports)
    body = struct.pack("!I", rr.ssrc) + b"".join(block.pack() for block in rr.reports)
    return _header(PT_RR, len(rr.reports), body)


def build_sdes(sdes: SourceDescription) -> bytes:
    if len(sdes.chunks) > 31:
        raise RtcpError("too_many_chunks", str(len(sdes.chunks)))
    body = bytearray()
    for chunk in sdes.chunks:
        body += struct.pack("!I", chunk.ssrc)
        for item_type, value in chunk.items:
            if not 1 <= item_type <= 255 or len(value) > 255:
                raise RtcpError("bad_sdes_item", f"type {item_type}, {len(value)} bytes")
            body += bytes([item_type, len(value)]) + value
        body += bytes(4 - len(body) % 4)  # a null item ends the chunk, then pad to a word
    return _header(PT_SDES, len(sdes.chunks), bytes(body))


def build_bye(bye: Bye) -> bytes:
    if len(bye.ssrcs) > 31 or len(bye.reason) > 255:
        raise RtcpError("bad_bye", "at most 31 sources and 255 bytes of reason")
    body = b"".join(struct.pack("!I", s) for s in bye.ssrcs)
    if bye.reason:
        reason = bytes([len(bye.reason)]) + bye.reason
        body += reason + bytes(-len(reason) % 4)
    return _header(PT_BYE, len(bye.ssrcs), body)


def build_compound(packets: list[RtcpPacket]) -> bytes:
    parts = []
    for packet in packets:
        if isinstance(packet, SenderReport):
            parts.append(build_sender_report(packet))
        elif isinstance(packet, ReceiverReport):
            parts.append(build_receiver_report(packet))
        elif isinstance(packet, SourceDescription):
            parts.append(build_sdes(packet))
        elif isinstance(packet, Bye):
            parts.append(build_bye(packet))
        else:
            parts.append(_header(packet.packet_type, packet.count, packet.body))
    return b"".join(parts)


def _parse_blocks(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    if offset + count * _REPORT_BLOCK.size > len(body):
        raise RtcpError("truncated_report", f"{count} report blocks")
    return tuple(ReportBlock.unpack(body, offset + i * _REPORT_BLOCK.size) for i in range(count))


def _parse_sdes(body: bytes, count: int) -> SourceDescription:
    chunks = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(body):
            raise RtcpError("truncated_sdes", "chunk header")
        (ssrc,) = struct.unpack_from("!I", body, offset)
        offset += 4
        items = []
        while True:
            if offset >= len(body):
                raise RtcpError("truncated_sdes", "chunk without its null item")
            item_type = body[offset]
            if item_type == 0:
                offset += 4 - offset % 4  # null item plus padding to the next word
                break
            if offset + 2 > len(body) or offset + 2 + body[offset + 1] > len(body):
                raise RtcpError("truncated_sdes", f"item type {item_type}")
            length = body[offset + 1]
            items.append((item_type, body[offset + 2 : offset + 2 + length]))
            offset += 2 + length
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return SourceDescription(tuple(chunks))


def _parse_bye(body: bytes, count: int) -> Bye:
    if 4 * count > len(body):
        raise RtcpError("truncated_bye", f"{count} sources")
    ssrcs = struct.unpack_from(f"!{count}I", body)
    reason = b""
    if len(body) > 4 * count:
        length = body[4 * count]
        if 4 * count + 1 + length > len(body):
            raise RtcpError("truncated_bye", "reason")
        reason = body[4 * count + 1 : 4 * count + 1 + length]
    return Bye(tuple(ssrcs), reason)


def _parse_one(packet_type: int, count: int, body: bytes) -> RtcpPacket:
    if packet_type == PT_SR:
        if len(body) < _SR_INFO.size:
            raise RtcpError("truncated_report", "sender info")
        ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body)
        blocks = _parse_blocks(body, _SR_INFO.size, count)
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, blocks)
    if packet_type == PT_RR:
        if len(body) < 4:
            raise RtcpError("truncated_report", "reporter ssrc")
        (ssrc,) = struct.unpack_from("!I", body)
        return ReceiverReport(ssrc, _parse_blocks(body, 4, count))
    if packet_type == PT_SDES:
        return _parse_sdes(body, count)
    if packet_type == PT_BYE:
        return _parse_bye(body, count)
    return RtcpUnknown(packet_type, count, body)


def parse_rtcp(datagram: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet; only the last packet may carry padding (RFC 3550 A.2)."""
    if len(datagram) < 4:
        raise RtcpError("too_short", f"{len(datagram)} bytes")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < len(datagram):
        if offset + 4 > len(datagram):
            raise RtcpError("truncated_header", f"{len(datagram) - offset} trailing bytes")
        first, packet_type, words = struct.unpack_from("!BBH", datagram, offset)
        if first >> 6 != RTP_VERSION:
            raise RtcpError("bad_version", str(first >> 6))
        if not 192 <= packet_type <= 223:
            raise RtcpError("bad_packet_type", str(packet_type))
        end = offset + 4 + 4 * words
        if end > len(datagram):
            raise RtcpError("bad_length", f"{words} words past the datagram")
        body = datagram[offset + 4 : end]
        if first & 0x20:
            if end != len(datagram):
                raise RtcpError("bad_padding", "padding before the last packet")
            pad = datagram[-1]
            if pad == 0 or pad > len(body):
                raise RtcpError("bad_padding", f"{pad} padding bytes")
            body = body[:-pad]
        packets.append(_parse_one(packet_type, first & 0x1F, body))
        offset = end
    return packets
