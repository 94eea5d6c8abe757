"""SIP requests as a caller behind Kamailio sends them, for the sans-I/O tests."""

from __future__ import annotations

from sip.message import SipRequest, SipResponse, parse_message

CALLER = ("127.0.0.1", 5070)
SDP_OFFER = (
    b"v=0\r\no=sipp 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
)


def request(
    method: str,
    *,
    call_id: str = "call-1",
    cseq: int = 1,
    branch: str = "z9hG4bK-1",
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str = "application/sdp",
    extra: str = "",
    cseq_method: str | None = None,
) -> bytes:
    to = "<sip:agent@127.0.0.1:5080>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:agent@127.0.0.1:5080 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport",
        "Max-Forwards: 69",
        "Record-Route: <sip:127.0.0.1:5070;lr>",
        'From: "Alice" <sip:alice@127.0.0.1:5061>;tag=alice-tag',
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:alice@127.0.0.1:5061>",
    ]
    if body:
        lines.append(f"Content-Type: {content_type}")
    if extra:
        lines.append(extra)
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def responses(out: list[tuple[bytes, tuple[str, int]]]) -> list[SipResponse]:
    parsed = [parse_message(data) for data, _ in out]
    return [m for m in parsed if isinstance(m, SipResponse)]


def requests(out: list[tuple[bytes, tuple[str, int]]]) -> list[SipRequest]:
    parsed = [parse_message(data) for data, _ in out]
    return [m for m in parsed if isinstance(m, SipRequest)]
