"""RTP fixed header, CSRC list, header extension and padding: RFC 3550 section 5.1 and 5.3.1.

Parsing is strict because the socket is open to anyone who can guess the port: every length is
checked against the datagram before it is used, and a malformed packet raises :class:`RtpError`
(never ``IndexError`` or ``struct.error``), so the session can count it and move on.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER_BYTES = 12
MAX_SEQ = 0xFFFF
MAX_TIMESTAMP = 0xFFFFFFFF
MAX_CSRC = 15

_HEADER = struct.Struct("!BBHII")


class RtpError(ValueError):
    """A datagram that is not a valid RTP packet; ``reason`` is a short counter label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class HeaderExtension:
    """RFC 3550 5.3.1: a 16-bit profile word and data whose length is a multiple of 4 bytes."""

    profile: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: HeaderExtension | None = None
    padding_bytes: int = 0  # padding octets after the payload, count byte included

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise RtpError("bad_payload_type", str(self.payload_type))
        if not 0 <= self.sequence_number <= MAX_SEQ:
            raise RtpError("bad_sequence_number", str(self.sequence_number))
        if not 0 <= self.timestamp <= MAX_TIMESTAMP or not 0 <= self.ssrc <= MAX_TIMESTAMP:
            raise RtpError("bad_header_field", "timestamp and ssrc are 32-bit")
        if len(self.csrc) > MAX_CSRC or any(not 0 <= c <= MAX_TIMESTAMP for c in self.csrc):
            raise RtpError("bad_csrc", f"{len(self.csrc)} entries")
        if not 0 <= self.padding_bytes <= 255:
            raise RtpError("bad_padding", str(self.padding_bytes))
        ext = self.extension
        if ext is not None and (
            not 0 <= ext.profile <= 0xFFFF or len(ext.data) % 4 or len(ext.data) > 0xFFFF * 4
        ):
            raise RtpError("bad_extension", "profile is 16-bit, data a multiple of 4 bytes")

    def serialize(self) -> bytes:
        first = (RTP_VERSION << 6) | len(self.csrc)
        if self.padding_bytes:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [_HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc)]
        parts.extend(struct.pack("!I", c) for c in self.csrc)
        if self.extension is not None:
            words = len(self.extension.data) // 4
            parts.append(struct.pack("!HH", self.extension.profile, words))
            parts.append(self.extension.data)
        parts.append(self.payload)
        if self.padding_bytes:
            parts.append(bytes(self.padding_bytes - 1) + bytes([self.padding_bytes]))
        return b"".join(parts)


def is_rtcp(datagram: bytes) -> bool:
    """RFC 5761 4: on a muxed port, second byte 192..223 is RTCP (200 SR .. 207 XR), not RTP."""
    return len(datagram) >= 2 and 192 <= datagram[1] <= 223


def parse_rtp(datagram: bytes) -> RtpPacket:
    """Parse one RTP packet, validating version, CSRC count, extension and padding lengths."""
    if len(datagram) < RTP_HEADER_BYTES:
        raise RtpError("too_short", f"{len(datagram)} bytes")
    first, second, seq, timestamp, ssrc = _HEADER.unpack_from(datagram)
    if first >> 6 != RTP_VERSION:
        raise RtpError("bad_version", str(first >> 6))
    has_padding = bool(first & 0x20)
    has_extension = bool(first & 0x10)
    csrc_count = first & 0x0F
    offset = RTP_HEADER_BYTES
    end = len(datagram)
    if offset + 4 * csrc_count > end:
        raise RtpError("truncated_csrc", f"{csrc_count} CSRCs in {end} bytes")
    csrc = struct.unpack_from(f"!{csrc_count}I", datagram, offset)
    offset += 4 * csrc_count
    extension = None
    if has_extension:
        if offset + 4 > end:
            raise RtpError("truncated_extension", "no room for the extension header")
        profile, words = struct.unpack_from("!HH", datagram, offset)
        offset += 4
        if offset + 4 * words > end:
            raise RtpError("truncated_extension", f"{words} words in {end - offset} bytes")
        extension = HeaderExtension(profile, datagram[offset : offset + 4 * words])
        offset += 4 * words
    padding_bytes = 0
    if has_padding:
        padding_bytes = datagram[-1]
        # 5.1: the last octet counts itself, so zero is invalid; it cannot eat into the header.
        if padding_bytes == 0 or offset + padding_bytes > end:
            raise RtpError("bad_padding", f"{padding_bytes} padding bytes")
        end -= padding_bytes
    return RtpPacket(
        payload_type=second & 0x7F,
        sequence_number=seq,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=datagram[offset:end],
        marker=bool(second & 0x80),
        csrc=tuple(csrc),
        extension=extension,
        padding_bytes=padding_bytes,
    )
