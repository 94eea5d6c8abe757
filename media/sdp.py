"""SDP (RFC 8866, formerly 4566) for audio over RTP: a strict parser and generator.

Only what a telephony RTP leg needs: one or more ``m=`` lines, G.711 (PCMU/PCMA), G.722 and
telephone-event (RFC 4733), ``ptime``, directions (hold is ``sendonly``/``inactive``, or the old
``c=0.0.0.0`` form of RFC 2543), ``rtcp`` and ``rtcp-mux``. Parsing is strict because SDP comes
from the network: unknown line types, missing mandatory lines, bad numbers and oversized bodies
raise :class:`SdpError` naming the line, which the SIP side turns into 400 or 488. Offer/answer
lives in ``media/sdp_negotiation.py``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

MAX_SDP_BYTES = 16_384
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
STATIC_PAYLOADS = {0: "PCMU", 8: "PCMA", 9: "G722"}  # RFC 3551 table 4: the ones we speak
SUPPORTED_CODECS = ("PCMU", "PCMA", "G722")  # G.722's RTP clock is 8000 too (RFC 3551 4.5.2)
SUPPORTED_PTIMES_MS = (10, 20, 30, 40, 60)
_SESSION_ORDER = "vosiuepcbtrzka"  # RFC 8866 5: session-level line order
_MEDIA_ORDER = "micbka"


class SdpError(ValueError):
    """The SDP text is malformed (SIP answers 400); the message names the line."""


class SdpNegotiationError(SdpError):
    """Well-formed, but nothing we can use: no common codec (SIP answers 488)."""


@dataclass(frozen=True, slots=True)
class RtpMap:
    payload_type: int
    encoding: str
    clock_rate_hz: int
    channels: int = 1


@dataclass(frozen=True, slots=True)
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: str | None = None
    rtpmaps: tuple[RtpMap, ...] = ()
    fmtps: tuple[tuple[int, str], ...] = ()
    ptime_ms: int | None = None
    direction: str | None = None
    rtcp_port: int | None = None
    rtcp_mux: bool = False
    attributes: tuple[tuple[str, str | None], ...] = ()  # others, kept in order

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        for rtpmap in self.rtpmaps:
            if rtpmap.payload_type == payload_type:
                return rtpmap
        name = STATIC_PAYLOADS.get(payload_type)
        return RtpMap(payload_type, name, 8000) if name else None


@dataclass(frozen=True, slots=True)
class SessionDescription:
    origin: str  # "username sess-id sess-version IN IP4 address"
    session_name: str = "-"
    connection: str | None = None  # address only: "IN IP4" is implied by it
    timing: str = "0 0"
    direction: str | None = None
    media: tuple[MediaDescription, ...] = ()
    attributes: tuple[tuple[str, str | None], ...] = ()
    bandwidths: tuple[str, ...] = ()

    def serialize(self) -> str:
        lines = ["v=0", f"o={self.origin}", f"s={self.session_name}"]
        if self.connection:
            lines.append(f"c={_connection_line(self.connection)}")
        lines.extend(f"b={b}" for b in self.bandwidths)
        lines.append(f"t={self.timing}")
        lines.extend(_attribute_lines(self.attributes))
        if self.direction:
            lines.append(f"a={self.direction}")
        for m in self.media:
            lines.append(f"m={m.media} {m.port} {m.proto} {' '.join(m.formats)}")
            if m.connection:
                lines.append(f"c={_connection_line(m.connection)}")
            lines.extend(
                f"a=rtpmap:{r.payload_type} {r.encoding}/{r.clock_rate_hz}"
                + (f"/{r.channels}" if r.channels != 1 else "")
                for r in m.rtpmaps
            )
            lines.extend(f"a=fmtp:{pt} {params}" for pt, params in m.fmtps)
            if m.ptime_ms is not None:
                lines.append(f"a=ptime:{m.ptime_ms}")
            if m.rtcp_port is not None:
                lines.append(f"a=rtcp:{m.rtcp_port}")
            if m.rtcp_mux:
                lines.append("a=rtcp-mux")
            lines.extend(_attribute_lines(m.attributes))
            if m.direction:
                lines.append(f"a={m.direction}")
        return "\r\n".join(lines) + "\r\n"


def _connection_line(address: str) -> str:
    version = ipaddress.ip_address(address).version
    return f"IN IP{version} {address}"


def _attribute_lines(attributes: tuple[tuple[str, str | None], ...]) -> list[str]:
    return [f"a={name}" if value is None else f"a={name}:{value}" for name, value in attributes]


def _int(text: str, what: str, lo: int, hi: int, lineno: int) -> int:
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise SdpError(f"line {lineno}: {what} {text!r} is not an integer in {lo}..{hi}")
    return int(text)


def _parse_connection(value: str, lineno: int) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"line {lineno}: c= must be 'IN IP4|IP6 address', got {value!r}")
    address = parts[2].split("/")[0]  # multicast TTL suffix is not for us, but parses
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise SdpError(f"line {lineno}: c= address {address!r} is not an IP address") from None
    if f"IP{parsed.version}" != parts[1]:
        raise SdpError(f"line {lineno}: c= says {parts[1]} but {address!r} is not")
    return address


def _parse_media_line(value: str, lineno: int) -> MediaDescription:
    parts = value.split()
    if len(parts) < 4:
        raise SdpError(f"line {lineno}: m= needs 'media port proto fmt...', got {value!r}")
    media, port_text, proto, *formats = parts
    port = _int(port_text.split("/")[0], "m= port", 0, 65535, lineno)
    if proto in ("RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF"):
        for fmt in formats:
            _int(fmt, "payload type", 0, 127, lineno)
    return MediaDescription(media, port, proto, tuple(formats))


def _apply_attribute(m: MediaDescription, name: str, value: str | None, n: int) -> MediaDescription:
    if name in DIRECTIONS:
        if value is not None or m.direction is not None:
            raise SdpError(f"line {n}: direction given twice or with a value")
        return replace(m, direction=name)
    if name == "rtpmap" and value is not None:
        pt_text, _, encoding = value.partition(" ")
        fields = encoding.split("/")
        if len(fields) not in (2, 3) or not fields[0]:
            raise SdpError(f"line {n}: rtpmap must be 'pt name/rate[/channels]', got {value!r}")
        pt = _int(pt_text, "rtpmap payload type", 0, 127, n)
        rate = _int(fields[1], "clock rate", 1, 1_000_000, n)
        channels = _int(fields[2], "channels", 1, 255, n) if len(fields) == 3 else 1
        if pt_text not in m.formats or m.rtpmap(pt) in m.rtpmaps:
            raise SdpError(f"line {n}: rtpmap for {pt} not in the m= line, or given twice")
        return replace(m, rtpmaps=(*m.rtpmaps, RtpMap(pt, fields[0], rate, channels)))
    if name == "fmtp" and value is not None:
        pt_text, _, params = value.partition(" ")
        pt = _int(pt_text, "fmtp payload type", 0, 127, n)
        return replace(m, fmtps=(*m.fmtps, (pt, params)))
    if name == "ptime" and value is not None:
        return replace(m, ptime_ms=_int(value, "ptime", 1, 1000, n))
    if name == "rtcp" and value is not None:
        return replace(m, rtcp_port=_int(value.split()[0], "rtcp port", 0, 65535, n))
    if name == "rtcp-mux" and value is None:
        return replace(m, rtcp_mux=True)
    if name in ("rtpmap", "fmtp", "ptime", "rtcp"):
        raise SdpError(f"line {n}: a={name} needs a value")
    return replace(m, attributes=(*m.attributes, (name, value)))


def _split_lines(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        if len(text) > MAX_SDP_BYTES:
            raise SdpError(f"SDP of {len(text)} bytes exceeds {MAX_SDP_BYTES}")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError(f"SDP is not UTF-8: {exc}") from None
    if len(text) > MAX_SDP_BYTES:
        raise SdpError(f"SDP of {len(text)} characters exceeds {MAX_SDP_BYTES}")
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def parse_sdp(text: str | bytes) -> SessionDescription:
    """Parse a session description; raises :class:`SdpError` naming the first bad line."""
    lines = _split_lines(text)
    session: dict[str, str] = {}
    attributes: list[tuple[str, str | None]] = []
    bandwidths: list[str] = []
    direction: str | None = None
    media: list[MediaDescription] = []
    order = _SESSION_ORDER
    last = -1
    for n, line in enumerate(lines, start=1):
        if len(line) < 2 or line[1] != "=" or not line[0].islower():
            raise SdpError(f"line {n}: expected 'x=value', got {line[:40]!r}")
        kind, value = line[0], line[2:]
        if any(ord(ch) < 32 and ch != "\t" for ch in value):
            raise SdpError(f"line {n}: control character in value")
        if kind == "m":
            media.append(_parse_media_line(value, n))
            order, last = _MEDIA_ORDER, 0
            continue
        position = order.find(kind)
        if position < 0:
            raise SdpError(f"line {n}: '{kind}=' is unknown or out of place")
        if position < last or (position == last and kind not in "epbtrak"):
            raise SdpError(f"line {n}: '{kind}=' is out of order or repeated")
        last = position
        if n == 1 and (kind != "v" or value != "0"):
            raise SdpError("line 1: SDP must start with v=0")
        if kind == "c":
            address = _parse_connection(value, n)
            if media:
                media[-1] = replace(media[-1], connection=address)
            else:
                session["c"] = address
        elif kind == "b":
            bandwidths.append(value)
        elif kind == "a" and media:
            name, sep, attr_value = value.partition(":")
            media[-1] = _apply_attribute(media[-1], name, attr_value if sep else None, n)
        elif kind == "a":
            name, sep, attr_value = value.partition(":")
            if name in DIRECTIONS:
                if direction is not None:
                    raise SdpError(f"line {n}: session direction given twice")
                direction = name
            else:
                attributes.append((name, attr_value if sep else None))
        elif kind in "vost" and kind not in session:
            session[kind] = value
    for kind, what in (("v", "v="), ("o", "o="), ("s", "s="), ("t", "t=")):
        if kind not in session:
            raise SdpError(f"missing mandatory {what} line")
    if len(session["o"].split()) != 6:
        raise SdpError(f"o= needs 6 fields, got {session['o']!r}")
    for m in media:
        if m.connection is None and "c" not in session:
            raise SdpError(f"m={m.media} has no c= line and there is none at session level")
    return SessionDescription(
        origin=session["o"],
        session_name=session["s"],
        connection=session.get("c"),
        timing=session["t"],
        direction=direction,
        media=tuple(media),
        attributes=tuple(attributes),
        bandwidths=tuple(bandwidths),
    )
