"""The SIP parser: strict, bounded, and total over arbitrary bytes (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip.headers import SipHeaderError, parse_name_addr, parse_uri, parse_via
from sip.info import parse_dtmf_info, parse_sipfrag_status
from sip.message import (
    MAX_HEADERS,
    MAX_MESSAGE_BYTES,
    SipParseError,
    SipRequest,
    SipResponse,
    parse_message,
    split_comma_list,
)
from tests.sip.messages import SDP_OFFER, request


def test_invite_round_trips() -> None:
    data = request("INVITE", body=SDP_OFFER)
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    assert (message.method, message.uri) == ("INVITE", "sip:agent@127.0.0.1:5080")
    assert message.body == SDP_OFFER
    assert parse_message(message.serialize()) == message


def test_compact_forms_and_folding_are_normalised() -> None:
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:x@y>;tag=1\r\n"
        b"t: <sip:a@b>\r\ni: abc\r\nCSeq: 1\r\n OPTIONS\r\nl: 0\r\n\r\n"
    )
    message = parse_message(data)
    assert message.get("Call-ID") == "abc" and message.get("call-id") == "abc"
    assert message.get("CSeq") == "1 OPTIONS"
    assert [name for name, _ in message.headers][:3] == ["Via", "From", "To"]


def test_content_length_bounds_the_body() -> None:
    data = request("INVITE", body=SDP_OFFER) + b"trailing junk"
    assert parse_message(data).body == SDP_OFFER
    with pytest.raises(SipParseError, match="truncated_body"):
        parse_message(request("INVITE", body=SDP_OFFER)[:-10])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"x" * (MAX_MESSAGE_BYTES + 1), "oversized"),
        (b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n", "no_header_end"),
        (b"INVITE sip:a@b SIP/3.0\r\n\r\n", "bad_request_line"),
        (b"invite sip:a@b SIP/2.0\r\n\r\n", "bad_request_line"),
        (b"SIP/2.0 99 Odd\r\n\r\n", "bad_status_line"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nNo colon here\r\n\r\n", "bad_header"),
        (b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X-A: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n",
         "too_many_headers"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 3000 + b"\r\n\r\n", "line_too_long"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nX: \xff\r\n\r\n", "not_utf8"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n", "missing_header"),
    ],
)  # fmt: skip
def test_malformed_messages_raise_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.reason == reason


def test_cseq_must_name_the_method() -> None:
    with pytest.raises(SipParseError, match="cseq_method_mismatch"):
        parse_message(request("BYE", cseq_method="INVITE"))
    with pytest.raises(SipParseError, match="bad_cseq"):
        parse_message(request("BYE").replace(b"CSeq: 1 BYE", b"CSeq: 99999999999 BYE"))


def test_response_parses() -> None:
    message = parse_message(
        b"SIP/2.0 202 Accepted\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n"
        b"To: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 2 REFER\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(message, SipResponse) and (message.status, message.reason) == (
        202,
        "Accepted",
    )


def test_header_values() -> None:
    via = parse_via("SIP/2.0/UDP [::1]:5070;branch=z9hG4bK-x;rport")
    assert (via.transport, via.host, via.port, via.branch) == ("UDP", "::1", 5070, "z9hG4bK-x")
    addr = parse_name_addr('"A, B" <sip:a@h;transport=udp>;tag=7')
    assert (addr.display, addr.uri, addr.tag) == ('"A, B"', "sip:a@h;transport=udp", "7")
    assert parse_name_addr("sip:a@h;tag=9").tag == "9"
    assert parse_uri("sip:bob@10.0.0.1:5070;lr").address == ("10.0.0.1", 5070)
    assert parse_uri("sip:10.0.0.1").address == ("10.0.0.1", 5060)
    assert split_comma_list('<sip:a;x=1,2>, "q,r" <sip:b>') == ["<sip:a;x=1,2>", '"q,r" <sip:b>']
    for bad in ("HTTP/1.1 x", "SIP/2.0/UDP :5060", "SIP/2.0/UDP h:99999"):
        with pytest.raises(SipHeaderError):
            parse_via(bad)
    with pytest.raises(SipHeaderError):
        parse_uri("tel:+123")


def test_dtmf_info_and_sipfrag_bodies() -> None:
    assert parse_dtmf_info("application/dtmf-relay", b"Signal=11\r\nDuration=250") == ("#", 250)
    assert parse_dtmf_info("application/dtmf", b"7") == ("7", 100)
    assert parse_dtmf_info("application/dtmf-relay", b"Signal=Z") is None
    assert parse_dtmf_info("text/plain", b"5") is None
    assert parse_sipfrag_status(b"SIP/2.0 180 Ringing\r\n") == 180
    assert parse_sipfrag_status(b"nonsense") is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_parser_is_total_over_random_bytes(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError as exc:
        assert exc.reason
    else:
        assert isinstance(message, SipRequest | SipResponse)


_VALID = request("INVITE", body=SDP_OFFER)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, len(_VALID) - 1), st.binary(min_size=1, max_size=8))
def test_parser_is_total_over_mutated_invites(position: int, noise: bytes) -> None:
    data = _VALID[:position] + noise + _VALID[position + len(noise) :]
    try:
        message = parse_message(data)
    except SipParseError:
        return
    again = parse_message(message.serialize())
    assert _without_length(again.headers) == _without_length(message.headers)
    assert again.body == message.body


def _without_length(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers if name.lower() != "content-length"]
