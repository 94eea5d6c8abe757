"""SIP messages (RFC 3261 7, 20): a strict parser and a serializer, sans-I/O.

A datagram is parsed whole (UDP, RFC 3261 18.3: one message per datagram). Everything that comes
from the network is bounded before it is looked at: the datagram size, the number of headers and
the length of a line. Anything malformed raises :class:`SipParseError` with a short ``reason``
(a metric label); the transport counts it and drops the datagram, since a message whose Via
cannot be trusted has nowhere to send a 400 to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SIP_VERSION = "SIP/2.0"
MAX_MESSAGE_BYTES = 8_192  # an INVITE with SDP is ~1 KB; kamailio adds Via and Record-Route
MAX_HEADERS = 64
MAX_LINE_BYTES = 2_048
MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")

# RFC 3261 7.3.3 compact forms, plus the ones of RFC 3515 (r, b) and RFC 6665 (o, u).
COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "f": "From",
    "t": "To",
    "v": "Via",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "r": "Refer-To",
    "b": "Referred-By",
    "o": "Event",
    "u": "Allow-Events",
}
_CANONICAL = {
    name.lower(): name
    for name in (
        *COMPACT.values(),
        "CSeq",
        "Max-Forwards",
        "Record-Route",
        "Route",
        "User-Agent",
        "Allow",
        "Accept",
        "Retry-After",
        "WWW-Authenticate",
        "Subscription-State",
        "Server",
    )
}
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9]) ([^\x00-\x08\x0a-\x1f]*)$")


class SipParseError(ValueError):
    """The bytes are not a well-formed SIP message; ``reason`` is a metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def canonical_name(name: str) -> str:
    """``v`` -> ``Via``, ``call-id`` -> ``Call-ID``; unknown names keep their own spelling."""
    lower = name.lower()
    if lower in COMPACT:
        return COMPACT[lower]
    return _CANONICAL.get(lower, name)


@dataclass(slots=True)
class _Base:
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def get(self, name: str) -> str | None:
        """The first value of a header (names are case-insensitive, compact forms resolved)."""
        wanted = canonical_name(name).lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value, comma-separated lists split (for Via, Route, Record-Route)."""
        wanted = canonical_name(name).lower()
        values: list[str] = []
        for key, value in self.headers:
            if key.lower() == wanted:
                values.extend(split_comma_list(value))
        return values

    def _header_lines(self) -> list[str]:
        lines = [f"{k}: {v}" for k, v in self.headers if k.lower() != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return lines


@dataclass(slots=True)
class SipRequest(_Base):
    method: str = ""
    uri: str = ""

    def serialize(self) -> bytes:
        head = [f"{self.method} {self.uri} {SIP_VERSION}", *self._header_lines()]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + self.body


@dataclass(slots=True)
class SipResponse(_Base):
    status: int = 200
    reason: str = "OK"

    def serialize(self) -> bytes:
        head = [f"{SIP_VERSION} {self.status} {self.reason}", *self._header_lines()]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + self.body


SipMessage = SipRequest | SipResponse


def split_comma_list(value: str) -> list[str]:
    """Split on commas outside quotes and angle brackets (a URI may hold commas)."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and not quoted and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def _split_head(data: bytes) -> tuple[list[str], bytes]:
    end = data.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = data.find(b"\n\n"), 2
    if end < 0:
        raise SipParseError("no_header_end")
    try:
        head = data[:end].decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("not_utf8") from None
    if "\x00" in head:
        raise SipParseError("nul_byte")
    return head.replace("\r\n", "\n").split("\n"), data[end + sep :]


def _unfold(lines: list[str]) -> list[str]:
    """RFC 3261 7.3.1: a line starting with whitespace continues the previous header."""
    out: list[str] = []
    for line in lines:
        if len(line) > MAX_LINE_BYTES:
            raise SipParseError("line_too_long")
        if line[:1] in (" ", "\t"):
            if not out:
                raise SipParseError("bad_folding")
            out[-1] = out[-1] + " " + line.strip()
        else:
            out.append(line)
    return out


def _parse_headers(lines: list[str]) -> list[tuple[str, str]]:
    if len(lines) > MAX_HEADERS:
        raise SipParseError("too_many_headers")
    headers: list[tuple[str, str]] = []
    for line in lines:
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.match(name):
            raise SipParseError("bad_header", line[:40])
        headers.append((canonical_name(name), value.strip()))
    return headers


def _parse_start_line(line: str) -> SipRequest | SipResponse:
    if line.startswith("SIP/"):
        match = _STATUS_LINE.match(line)
        if match is None:
            raise SipParseError("bad_status_line", line[:40])
        return SipResponse(status=int(match.group(1)), reason=match.group(2))
    parts = line.split(" ")
    if len(parts) != 3 or parts[2] != SIP_VERSION:
        raise SipParseError("bad_request_line", line[:40])
    method, uri = parts[0], parts[1]
    if not _TOKEN.match(method) or not method.isupper() or ":" not in uri:
        raise SipParseError("bad_request_line", line[:40])
    return SipRequest(method=method, uri=uri)


def _body(message: SipMessage, rest: bytes) -> bytes:
    length_text = message.get("Content-Length")
    if length_text is None:
        return rest  # RFC 3261 18.3: optional over UDP; the datagram's end is the body's end
    if not length_text.isdigit() or len(length_text) > 6:
        raise SipParseError("bad_content_length")
    length = int(length_text)
    if length > len(rest):
        raise SipParseError("truncated_body")
    return rest[:length]  # extra bytes after Content-Length are discarded (18.3)


def _check_mandatory(message: SipMessage) -> None:
    for name in MANDATORY:
        if message.get(name) is None:
            raise SipParseError("missing_header", name)
    cseq = message.get("CSeq") or ""
    number, _, method = cseq.partition(" ")
    if not number.isdigit() or len(number) > 10 or not method.strip():
        raise SipParseError("bad_cseq", cseq[:40])
    if int(number) >= 2**31:
        raise SipParseError("bad_cseq", cseq[:40])
    if isinstance(message, SipRequest) and method.strip() != message.method:
        raise SipParseError("cseq_method_mismatch")


def parse_message(data: bytes) -> SipMessage:
    """One SIP message from one datagram, or :class:`SipParseError`."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError("oversized")
    data = data.lstrip(b"\r\n")  # RFC 3261 7.5: ignore CRLFs before the start line
    if not data:
        raise SipParseError("empty")
    lines, rest = _split_head(data)
    message = _parse_start_line(lines[0])
    message.headers = _parse_headers(_unfold(lines[1:]))
    message.body = _body(message, rest)
    _check_mandatory(message)
    return message


def cseq_of(message: SipMessage) -> tuple[int, str]:
    number, _, method = (message.get("CSeq") or "0 X").partition(" ")
    return int(number), method.strip()


def is_sdp(message: SipRequest) -> bool:
    content_type = (message.get("Content-Type") or "").split(";")[0].strip().lower()
    return content_type == "application/sdp" and bool(message.body.strip())
