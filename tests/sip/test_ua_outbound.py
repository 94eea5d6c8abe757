"""The sans-I/O user agent as a client: outbound INVITEs (answer, failure, timeout, CANCEL,
digest challenges) and registration (challenge, refresh, back-off, Expires: 0)."""

from __future__ import annotations

import itertools

import pytest

from sip.digest import Credentials, parse_challenge, response_digest
from sip.events import (
    CallEnded,
    OutgoingAnswered,
    OutgoingFailed,
    OutgoingProgress,
    RegistrationChanged,
    Rejected,
)
from sip.message import SipRequest, parse_message
from sip.register_client import RegisterConfig
from sip.transactions import TIMEOUT_S
from sip.ua import UaConfig, UserAgent
from tests.sip.messages import SDP_OFFER, requests

PROXY = ("127.0.0.1", 5070)
TARGET = "sip:+15550002@127.0.0.1:5070"
ALICE = Credentials("alice", "secret")


def make_ua(credentials: Credentials | None = ALICE) -> UserAgent:
    counter = itertools.count(1)
    config = UaConfig("127.0.0.1", 5080, credentials=credentials)
    return UserAgent(config, token=lambda: f"t{next(counter)}")


def reply(
    req: SipRequest,
    status: int,
    reason: str = "X",
    *extra: str,
    to_tag: str = "uas",
    body: bytes = b"",
) -> bytes:
    to = req.get("To") or ""
    lines = [
        f"SIP/2.0 {status} {reason}",
        *(f"Via: {v}" for v in req.get_all("Via")),
        f"From: {req.get('From')}",
        f"To: {to if ';tag=' in to or status == 100 else f'{to};tag={to_tag}'}",
        f"Call-ID: {req.get('Call-ID')}",
        f"CSeq: {req.get('CSeq')}",
        *extra,
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sent(ua: UserAgent) -> list[SipRequest]:
    return requests(ua.take_outgoing())


def start_call(ua: UserAgent) -> tuple[str, SipRequest]:
    call_id = ua.invite(TARGET, "sip:+15550001@127.0.0.1", SDP_OFFER, PROXY, 0.0)
    (invite,) = sent(ua)
    return call_id, invite


def test_invite_ringing_answer_ack_then_bye_both_ways() -> None:
    ua = make_ua()
    call_id, invite = start_call(ua)
    assert invite.method == "INVITE" and invite.uri == TARGET and invite.body == SDP_OFFER
    assert invite.get("Content-Type") == "application/sdp" and invite.get("CSeq") == "1 INVITE"
    assert ua.receive_datagram(reply(invite, 100), PROXY, 0.1) == []
    ringing = ua.receive_datagram(reply(invite, 180), PROXY, 0.2)
    assert ringing == [OutgoingProgress(call_id, 180)]
    assert sent(ua) == []  # a provisional stops the INVITE's retransmissions
    ua.handle_timeout(10.0)
    assert sent(ua) == []
    ok = reply(
        invite,
        200,
        "OK",
        "Contact: <sip:bob@127.0.0.1:6000>",
        "Record-Route: <sip:p2;lr>, <sip:p1:5070;lr>",
        body=b"v=0\r\n",
    )
    assert ua.receive_datagram(ok, PROXY, 1.0) == [OutgoingAnswered(call_id, b"v=0\r\n")]
    out = ua.take_outgoing()
    (ack,) = requests(out)
    assert ack.method == "ACK" and ack.uri == "sip:bob@127.0.0.1:6000"
    assert ack.get("CSeq") == "1 ACK" and ack.get_all("Route") == [
        "<sip:p1:5070;lr>",
        "<sip:p2;lr>",
    ]
    assert out[0][1] == ("p1", 5070)  # loose routing: the first route is the next hop
    assert ack.get_all("Via")[0] != invite.get_all("Via")[0]  # a new transaction
    ua.receive_datagram(ok, PROXY, 1.5)  # the 2xx again: the same ACK again
    assert [r.method for r in sent(ua)] == ["ACK"]
    bye = (
        "BYE sip:callbridge@127.0.0.1:5080 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKb\r\n"
        f"From: {(parse_message(ok).get('To'))}\r\nTo: {invite.get('From')}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    assert ua.receive_datagram(bye, PROXY, 2.0) == [CallEnded(call_id, "bye")]


def test_our_bye_after_answer_uses_the_dialog() -> None:
    ua = make_ua()
    call_id, invite = start_call(ua)
    ok = reply(invite, 200, "OK", "Contact: <sip:bob@127.0.0.1:6000>", body=b"v=0\r\n")
    ua.receive_datagram(ok, PROXY, 1.0)
    sent(ua)
    ua.bye(call_id, 2.0)
    (bye,) = sent(ua)
    assert (
        bye.method == "BYE" and bye.get("CSeq") == "2 BYE" and bye.uri == "sip:bob@127.0.0.1:6000"
    )
    assert bye.get("To") == "<sip:+15550002@127.0.0.1:5070>;tag=uas"


@pytest.mark.parametrize(
    ("status", "reason"), [(486, "Busy Here"), (503, "Unavailable"), (603, "Decline")]
)
def test_a_final_error_is_acked_on_the_invite_branch_and_ends_the_call(
    status: int, reason: str
) -> None:
    ua = make_ua()
    call_id, invite = start_call(ua)
    events = ua.receive_datagram(reply(invite, status, reason), PROXY, 0.5)
    assert events == [OutgoingFailed(call_id, status, reason)]
    (ack,) = sent(ua)
    assert ack.method == "ACK" and ack.uri == invite.uri and ack.get("CSeq") == "1 ACK"
    assert (
        ack.get("Via") == invite.get("Via")
        and ack.get(
            "To",
        )
        == f"{invite.get('To')};tag=uas"
    )
    ua.receive_datagram(reply(invite, status, reason), PROXY, 0.6)  # retransmitted: ACKed
    assert [r.method for r in sent(ua)] == ["ACK"]


def test_no_response_times_out_after_64_t1_with_retransmissions() -> None:
    ua = make_ua()
    call_id, _ = start_call(ua)
    ua.handle_timeout(0.5)
    assert [r.method for r in sent(ua)] == ["INVITE"]
    assert ua.handle_timeout(TIMEOUT_S + 0.1) == [OutgoingFailed(call_id, 408, "Request Timeout")]


def test_a_401_is_acked_and_answered_with_credentials_and_the_next_cseq() -> None:
    ua = make_ua()
    call_id, invite = start_call(ua)
    challenge = 'Digest realm="example.org", nonce="abc", qop="auth", algorithm=SHA-256'
    assert (
        ua.receive_datagram(
            reply(invite, 401, "Unauthorized", f"WWW-Authenticate: {challenge}"), PROXY, 0.3
        )
        == []
    )
    ack, again = sent(ua)
    assert ack.method == "ACK" and ack.get("CSeq") == "1 ACK"
    assert again.method == "INVITE" and again.get("CSeq") == "2 INVITE"
    assert again.get("Call-ID") == call_id and again.get("Via") != invite.get("Via")
    header = again.get("Authorization") or ""
    assert (
        'username="alice"' in header and "nc=00000001" in header and "algorithm=SHA-256" in header
    )
    cnonce = header.split('cnonce="')[1].split('"')[0]
    expected = response_digest(parse_challenge(challenge), ALICE, "INVITE", TARGET, cnonce, 1)
    assert f'response="{expected}"' in header
    # the same nonce challenged again: the password is wrong; no loop
    events = ua.receive_datagram(
        reply(again, 401, "Unauthorized", f"WWW-Authenticate: {challenge}"), PROXY, 0.6
    )
    assert events == [OutgoingFailed(call_id, 401, "Unauthorized: digest rejected")]


def test_a_407_gets_proxy_authorization() -> None:
    ua = make_ua()
    _, invite = start_call(ua)
    challenge = 'Proxy-Authenticate: Digest realm="p", nonce="n", qop="auth"'
    ua.receive_datagram(reply(invite, 407, "Proxy Authentication Required", challenge), PROXY, 0.1)
    _, again = sent(ua)
    assert (again.get("Proxy-Authorization") or "").startswith('Digest username="alice"')


@pytest.mark.parametrize(
    "challenge", ["", "WWW-Authenticate: Basic realm=x", 'WWW-Authenticate: Digest realm="x']
)
def test_unanswerable_challenges_end_the_call_with_a_reason(challenge: str) -> None:
    ua = make_ua()
    _call_id, invite = start_call(ua)
    extra = [challenge] if challenge else []
    (event,) = ua.receive_datagram(reply(invite, 401, "Unauthorized", *extra), PROXY, 0.1)
    assert isinstance(event, OutgoingFailed) and event.status == 401
    assert "digest" in event.reason


def test_without_credentials_a_challenge_fails_the_call() -> None:
    ua = make_ua(credentials=None)
    call_id, invite = start_call(ua)
    events = ua.receive_datagram(reply(invite, 401, "Unauthorized"), PROXY, 0.1)
    assert events == [OutgoingFailed(call_id, 401, "Unauthorized: no credentials configured")]


def test_cancel_waits_for_a_provisional_then_487_is_acked() -> None:
    ua = make_ua()
    call_id, invite = start_call(ua)
    ua.bye(call_id, 0.1)  # hung up before any response: no CANCEL yet (9.1)
    assert sent(ua) == []
    assert ua.receive_datagram(reply(invite, 180), PROXY, 0.2) == []
    (cancel,) = sent(ua)
    assert cancel.method == "CANCEL" and cancel.get("Via") == invite.get("Via")
    assert cancel.get("CSeq") == "1 CANCEL" and cancel.uri == invite.uri
    assert ua.receive_datagram(reply(cancel, 200, "OK"), PROXY, 0.3) == []
    events = ua.receive_datagram(reply(invite, 487, "Request Terminated"), PROXY, 0.4)
    assert events == [OutgoingFailed(call_id, 487, "Request Terminated")]
    assert [r.method for r in sent(ua)] == ["ACK"]


def test_a_2xx_crossing_our_cancel_is_acked_and_ended_with_bye() -> None:
    ua = make_ua()
    call_id, invite = start_call(ua)
    ua.receive_datagram(reply(invite, 180), PROXY, 0.1)
    ua.bye(call_id, 0.2)
    sent(ua)
    events = ua.receive_datagram(reply(invite, 200, "OK", body=b"v=0\r\n"), PROXY, 0.3)
    assert events == [OutgoingFailed(call_id, 487, "cancelled")]
    assert [r.method for r in sent(ua)] == ["ACK", "BYE"]
    assert call_id not in ua.dialogs


def test_stray_and_malformed_responses_are_counted_not_crashes() -> None:
    ua = make_ua()
    _, invite = start_call(ua)
    stray = reply(invite, 200, "OK").replace(
        invite.get_all("Via")[0].encode(), b"SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKnone"
    )
    assert ua.receive_datagram(stray, PROXY, 0.1) == [Rejected("stray_response", 0)]
    bad_to = reply(invite, 200, "OK", body=b"v=0").replace(b">;tag=uas", b";tag=uas")
    (event,) = ua.receive_datagram(bad_to, PROXY, 0.2)
    assert isinstance(event, OutgoingFailed | Rejected)


# Registration -------------------------------------------------------------------------------

REG = RegisterConfig("sip:alice@127.0.0.1:5070", expires_s=600)


def test_register_answers_the_challenge_then_refreshes_before_expiry() -> None:
    ua = make_ua()
    ua.register(REG, 0.0)
    (first,) = sent(ua)
    assert first.method == "REGISTER" and first.uri == "sip:127.0.0.1:5070"
    assert first.get("Expires") == "600" and first.get("To") == "<sip:alice@127.0.0.1:5070>"
    challenge = 'WWW-Authenticate: Digest realm="127.0.0.1", nonce="n1", qop="auth"'
    assert ua.receive_datagram(reply(first, 401, "Unauthorized", challenge), PROXY, 0.1) == []
    (second,) = sent(ua)
    assert second.get("CSeq") == "2 REGISTER" and second.get("Call-ID") == first.get("Call-ID")
    assert 'uri="sip:127.0.0.1:5070"' in (second.get("Authorization") or "")
    ok = reply(second, 200, "OK", "Contact: <sip:callbridge@127.0.0.1:5080>;expires=120")
    events = ua.receive_datagram(ok, PROXY, 0.2)
    assert events == [RegistrationChanged("registered", 200, expires_s=120)]
    assert ua.next_deadline() == pytest.approx(0.2 + 96)  # 120 - 24: before it lapses
    ua.handle_timeout(0.2 + 96)
    (refresh,) = sent(ua)
    assert refresh.get("CSeq") == "3 REGISTER" and "nc=00000002" in (
        refresh.get("Authorization") or ""
    )


def test_register_backs_off_after_failures_and_unregisters_with_expires_0() -> None:
    ua = make_ua()
    ua.register(REG, 0.0)
    (first,) = sent(ua)
    events = ua.receive_datagram(reply(first, 403, "Forbidden"), PROXY, 0.1)
    assert events == [RegistrationChanged("failed", 403, retry_s=5.0, detail="Forbidden")]
    ua.handle_timeout(5.1)
    (_retry,) = sent(ua)
    events = ua.handle_timeout(5.1 + TIMEOUT_S)  # no answer at all: 408, then 10 s
    assert (
        RegistrationChanged("failed", 408, retry_s=10.0, detail="no response from the registrar")
        in events
    )
    ua.take_outgoing()
    ua.handle_timeout(5.1 + TIMEOUT_S + 10)
    (third,) = sent(ua)
    ua.receive_datagram(reply(third, 200, "OK", "Expires: 600"), PROXY, 50.0)
    assert ua.unregister(51.0)
    (bye,) = sent(ua)
    assert bye.get("Expires") == "0"
    events = ua.receive_datagram(reply(bye, 200, "OK"), PROXY, 51.1)
    assert events == [RegistrationChanged("unregistered", 200)]
    assert ua.next_deadline() is None or ua.next_deadline() > 60  # no refresh after it
