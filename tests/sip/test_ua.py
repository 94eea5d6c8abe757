"""The sans-I/O user agent: call flows as a caller behind Kamailio drives them."""

from __future__ import annotations

import itertools

import pytest

from sip.events import (
    CallConfirmed,
    CallEnded,
    DtmfInfo,
    IncomingCall,
    ReferStatus,
    Rejected,
    ReOffer,
)
from sip.message import SipResponse, parse_message
from sip.transactions import TIMEOUT_S
from sip.ua import UaConfig, UserAgent
from tests.sip.messages import CALLER, SDP_OFFER, request, requests, responses

ANSWER = b"v=0\r\no=callbridge 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"


def make_ua(**overrides: object) -> UserAgent:
    counter = itertools.count(1)
    config = UaConfig("127.0.0.1", 5080, **overrides)  # type: ignore[arg-type]
    return UserAgent(config, token=lambda: f"t{next(counter)}")


def answered_call(ua: UserAgent) -> str:
    """INVITE, 200, ACK: returns our to-tag."""
    ua.receive_datagram(request("INVITE", body=SDP_OFFER), CALLER, 0.0)
    ua.answer("call-1", ANSWER, 0.0)
    tag = ua.dialogs["call-1"].local_tag
    events = ua.receive_datagram(request("ACK", branch="z9hG4bK-ack", to_tag=tag), CALLER, 0.1)
    assert events == [CallConfirmed("call-1")]
    ua.take_outgoing()
    return tag


def test_invite_gets_trying_then_ringing_then_answer() -> None:
    ua = make_ua()
    events = ua.receive_datagram(request("INVITE", body=SDP_OFFER), CALLER, 0.0)
    assert events == [
        IncomingCall("call-1", CALLER, "sip:alice@127.0.0.1:5061", "sip:agent@127.0.0.1:5080",
                     SDP_OFFER)
    ]  # fmt: skip
    ua.ringing("call-1", 0.0)
    ua.answer("call-1", ANSWER, 0.0)
    out = ua.take_outgoing()
    assert [r.status for r in responses(out)] == [100, 180, 200]
    assert all(dest == CALLER for _, dest in out)
    ok = responses(out)[2]
    assert ok.body == ANSWER and ok.get("Content-Type") == "application/sdp"
    assert ok.get("Record-Route") == "<sip:127.0.0.1:5070;lr>"
    assert ok.get("Contact") == "<sip:callbridge@127.0.0.1:5080>"
    assert ok.get("To") == "<sip:agent@127.0.0.1:5080>;tag=t1"
    assert ok.get("Via") == "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport"


def test_2xx_is_retransmitted_until_ack_then_stops() -> None:
    ua = make_ua()
    ua.receive_datagram(request("INVITE", body=SDP_OFFER), CALLER, 0.0)
    ua.answer("call-1", ANSWER, 0.0)
    ua.take_outgoing()
    assert ua.next_deadline() == pytest.approx(0.5)
    ua.handle_timeout(0.5)
    assert [r.status for r in responses(ua.take_outgoing())] == [200]
    tag = ua.dialogs["call-1"].local_tag
    ack = request("ACK", branch="z9hG4bK-ack", to_tag=tag)
    assert ua.receive_datagram(ack, CALLER, 0.6) == [CallConfirmed("call-1")]
    ua.handle_timeout(10.0)
    assert ua.take_outgoing() == []


def test_missing_ack_ends_the_call_with_bye() -> None:
    ua = make_ua()
    ua.receive_datagram(request("INVITE", body=SDP_OFFER), CALLER, 0.0)
    ua.answer("call-1", ANSWER, 0.0)
    events = ua.handle_timeout(TIMEOUT_S + 0.1)
    assert events == [CallEnded("call-1", "no_ack")]
    assert [r.method for r in requests(ua.take_outgoing())] == ["BYE"]
    assert "call-1" not in ua.dialogs


def test_retransmitted_invite_gets_the_last_response_again() -> None:
    ua = make_ua()
    ua.receive_datagram(request("INVITE", body=SDP_OFFER), CALLER, 0.0)
    ua.answer("call-1", ANSWER, 0.0)
    ua.take_outgoing()
    events = ua.receive_datagram(request("INVITE", body=SDP_OFFER), CALLER, 0.2)
    assert events == []
    assert [r.status for r in responses(ua.take_outgoing())] == [200]


def test_peer_bye_ends_the_call() -> None:
    ua = make_ua()
    tag = answered_call(ua)
    events = ua.receive_datagram(request("BYE", cseq=2, branch="z9hG4bK-b", to_tag=tag), CALLER, 1)
    assert events == [CallEnded("call-1", "bye")]
    assert [r.status for r in responses(ua.take_outgoing())] == [200]
    assert ua.dialogs == {}


def test_our_bye_follows_the_route_set_and_retransmits_until_answered() -> None:
    ua = make_ua()
    answered_call(ua)
    ua.bye("call-1", 1.0)
    out = ua.take_outgoing()
    (bye,) = requests(out)
    assert bye.method == "BYE" and bye.uri == "sip:alice@127.0.0.1:5061"
    assert bye.get("Route") == "<sip:127.0.0.1:5070;lr>"
    assert bye.get("To") == "<sip:alice@127.0.0.1:5061>;tag=alice-tag"
    assert bye.get("CSeq") == "1 BYE"
    assert out[0][1] == ("127.0.0.1", 5070)  # loose routing: to the proxy
    ua.handle_timeout(1.5)
    assert [r.method for r in requests(ua.take_outgoing())] == ["BYE"]
    ok = SipResponse(headers=list(bye.headers), status=200, reason="OK")
    ua.receive_datagram(ok.serialize(), CALLER, 1.6)
    ua.handle_timeout(5.0)
    assert ua.take_outgoing() == []


def test_cancel_before_answer_gives_200_and_487() -> None:
    ua = make_ua()
    ua.receive_datagram(request("INVITE", body=SDP_OFFER), CALLER, 0.0)
    ua.take_outgoing()
    events = ua.receive_datagram(request("CANCEL"), CALLER, 0.5)
    assert events == [CallEnded("call-1", "cancel")]
    out = responses(ua.take_outgoing())
    assert [(r.status, r.get("CSeq")) for r in out] == [(200, "1 CANCEL"), (487, "1 INVITE")]
    assert ua.dialogs == {}
    ua.answer("call-1", ANSWER, 0.6)  # the adapter was slower than the CANCEL: ignored
    assert ua.take_outgoing() == []


def test_cancel_of_unknown_transaction_is_481() -> None:
    ua = make_ua()
    events = ua.receive_datagram(request("CANCEL"), CALLER, 0.0)
    assert events == [Rejected("cancel_no_transaction", 481)]


def test_reinvite_for_hold_is_offered_and_answered() -> None:
    ua = make_ua()
    tag = answered_call(ua)
    hold = SDP_OFFER + b"a=sendonly\r\n"
    reinvite = request("INVITE", cseq=2, branch="z9hG4bK-2", to_tag=tag, body=hold)
    assert ua.receive_datagram(reinvite, CALLER, 1.0) == [ReOffer("call-1", hold)]
    ua.answer("call-1", ANSWER, 1.0)
    assert [r.status for r in responses(ua.take_outgoing())] == [200]
    ack = request("ACK", cseq=2, branch="z9hG4bK-2a", to_tag=tag)
    assert ua.receive_datagram(ack, CALLER, 1.1) == []  # already confirmed
    ua.handle_timeout(3.0)
    assert ua.take_outgoing() == []


def test_second_reinvite_while_one_is_pending_is_491() -> None:
    ua = make_ua()
    tag = answered_call(ua)
    ua.receive_datagram(request("INVITE", cseq=2, branch="z9hG4bK-2", to_tag=tag, body=SDP_OFFER),
                        CALLER, 1.0)  # fmt: skip
    events = ua.receive_datagram(
        request("INVITE", cseq=3, branch="z9hG4bK-3", to_tag=tag, body=SDP_OFFER), CALLER, 1.1
    )
    assert events == [Rejected("request_pending", 491)]


def test_in_dialog_request_with_unknown_tags_is_481() -> None:
    ua = make_ua()
    answered_call(ua)
    events = ua.receive_datagram(request("BYE", cseq=2, to_tag="nope"), CALLER, 1.0)
    assert events == [Rejected("no_dialog", 481)]
    assert responses(ua.take_outgoing())[0].status == 481
    assert "call-1" in ua.dialogs


def test_out_of_dialog_bye_and_info_are_481() -> None:
    ua = make_ua()
    for method in ("BYE", "INFO"):
        events = ua.receive_datagram(request(method, branch=f"z9hG4bK-{method}"), CALLER, 0.0)
        assert events == [Rejected("out_of_dialog", 481)]


def test_options_probe_gets_200_with_allow() -> None:
    ua = make_ua()
    assert ua.receive_datagram(request("OPTIONS"), CALLER, 0.0) == []
    (ok,) = responses(ua.take_outgoing())
    assert ok.status == 200 and "INVITE" in (ok.get("Allow") or "")


def test_register_is_405_and_unknown_method_is_501() -> None:
    ua = make_ua()
    assert ua.receive_datagram(request("REGISTER"), CALLER, 0.0)[0].status == 405  # type: ignore[union-attr]
    assert ua.receive_datagram(request("FOO", branch="z9hG4bK-f"), CALLER, 0.0)[0] == Rejected(
        "not_implemented", 501
    )


def test_info_dtmf_relay_is_a_key_press() -> None:
    ua = make_ua()
    tag = answered_call(ua)
    info = request("INFO", cseq=2, to_tag=tag, body=b"Signal=5\r\nDuration=160\r\n",
                   content_type="application/dtmf-relay")  # fmt: skip
    assert ua.receive_datagram(info, CALLER, 1.0) == [DtmfInfo("call-1", "5", 160)]
    assert responses(ua.take_outgoing())[0].status == 200


def test_stale_cseq_in_dialog_is_500() -> None:
    ua = make_ua()
    tag = answered_call(ua)
    info = request("INFO", cseq=1, branch="z9hG4bK-old", to_tag=tag, body=b"5",
                   content_type="application/dtmf")  # fmt: skip
    assert ua.receive_datagram(info, CALLER, 1.0) == [Rejected("cseq_out_of_order", 500)]


def test_refer_then_notify_reports_transfer_progress() -> None:
    ua = make_ua()
    tag = answered_call(ua)
    assert ua.refer("call-1", "sip:sales@example.com", 1.0)
    (refer,) = requests(ua.take_outgoing())
    assert refer.method == "REFER"
    assert refer.get("Refer-To") == "<sip:sales@example.com>"
    accepted = SipResponse(headers=list(refer.headers), status=202, reason="Accepted")
    assert ua.receive_datagram(accepted.serialize(), CALLER, 1.1) == [
        ReferStatus("call-1", 202, False)
    ]
    extra = "Event: refer\r\nSubscription-State: terminated;reason=noresource"
    notify = request("NOTIFY", cseq=2, branch="z9hG4bK-n", to_tag=tag, body=b"SIP/2.0 200 OK\r\n",
                     content_type="message/sipfrag", extra=extra)  # fmt: skip
    assert ua.receive_datagram(notify, CALLER, 1.2) == [ReferStatus("call-1", 200, True)]


def test_unanswered_refer_times_out_as_408() -> None:
    ua = make_ua()
    answered_call(ua)
    ua.refer("call-1", "sip:sales@example.com", 1.0)
    assert ua.handle_timeout(1.0 + TIMEOUT_S) == [ReferStatus("call-1", 408, True)]


def test_invite_flood_from_one_source_gets_503_with_retry_after() -> None:
    ua = make_ua(invite_rate_per_s=1.0, invite_burst=3)
    statuses = []
    for i in range(5):
        data = request("INVITE", call_id=f"flood-{i}", branch=f"z9hG4bK-{i}", body=SDP_OFFER)
        ua.receive_datagram(data, CALLER, 0.0)
        statuses.append(responses(ua.take_outgoing())[0])
    assert [r.status for r in statuses] == [100, 100, 100, 503, 503]
    assert statuses[3].get("Retry-After") == "1"
    other = request("INVITE", call_id="other", branch="z9hG4bK-o", body=SDP_OFFER)
    assert isinstance(ua.receive_datagram(other, ("127.0.0.2", 5060), 0.0)[0], IncomingCall)


def test_invite_without_sdp_is_488_and_without_contact_400() -> None:
    ua = make_ua()
    assert ua.receive_datagram(request("INVITE"), CALLER, 0.0) == [Rejected("no_sdp_offer", 488)]
    data = request("INVITE", call_id="c2", branch="z9hG4bK-c2", body=SDP_OFFER)
    data = data.replace(b"Contact: <sip:alice@127.0.0.1:5061>\r\n", b"")
    assert ua.receive_datagram(data, CALLER, 0.0) == [Rejected("missing_contact", 400)]


def test_garbage_and_stray_responses_are_counted_not_answered() -> None:
    ua = make_ua()
    assert ua.receive_datagram(b"\x16\x03\x01garbage", CALLER, 0.0) == [
        Rejected("malformed_no_header_end", 0)
    ]
    stray = parse_message(request("OPTIONS"))
    response = SipResponse(headers=list(stray.headers), status=200, reason="OK").serialize()
    assert ua.receive_datagram(response, CALLER, 0.0) == [Rejected("stray_response", 0)]
    assert ua.receive_datagram(b"\r\n\r\n", CALLER, 0.0) == []
    assert ua.take_outgoing() == []


def test_max_forwards_zero_is_483() -> None:
    ua = make_ua()
    data = request("OPTIONS").replace(b"Max-Forwards: 69", b"Max-Forwards: 0")
    assert ua.receive_datagram(data, CALLER, 0.0) == [Rejected("too_many_hops", 483)]


def test_hangup_before_answer_is_480() -> None:
    ua = make_ua()
    ua.receive_datagram(request("INVITE", body=SDP_OFFER), CALLER, 0.0)
    ua.bye("call-1", 0.1)
    assert [r.status for r in responses(ua.take_outgoing())] == [100, 480]
    assert ua.dialogs == {}


def test_hangup_before_answer_with_a_cause_is_its_status() -> None:
    """An API hangup's cause reaches an unanswered caller: busy (Q.850 17) is 486,
    rejected (21) 603, congestion (34) 503."""
    got = []
    for cause in (17, 21, 34):
        ua = make_ua()
        ua.receive_datagram(request("INVITE", body=SDP_OFFER), CALLER, 0.0)
        ua.bye("call-1", 0.1, cause)
        got.append([r.status for r in responses(ua.take_outgoing())])
    assert got == [[100, 486], [100, 603], [100, 503]]


def test_required_extensions_we_lack_are_420() -> None:
    ua = make_ua()
    data = request("INVITE", body=SDP_OFFER, extra="Require: 100rel")
    assert ua.receive_datagram(data, CALLER, 0.0) == [Rejected("bad_extension", 420)]
    (response,) = responses(ua.take_outgoing())
    assert response.get("Unsupported") == "100rel"
    assert ua.dialogs == {}


def test_reinvite_without_an_offer_asks_for_ours() -> None:
    ua = make_ua()
    tag = answered_call(ua)
    refresh = request("INVITE", cseq=2, branch="z9hG4bK-r", to_tag=tag)
    assert ua.receive_datagram(refresh, CALLER, 1.0) == [ReOffer("call-1", b"")]
    ua.answer("call-1", ANSWER, 1.0)
    assert responses(ua.take_outgoing())[0].body == ANSWER


def test_our_bye_during_a_reinvite_answers_it_487_first() -> None:
    ua = make_ua()
    tag = answered_call(ua)
    reinvite = request("INVITE", cseq=2, branch="z9hG4bK-2", to_tag=tag, body=SDP_OFFER)
    ua.receive_datagram(reinvite, CALLER, 1.0)
    ua.bye("call-1", 1.1)
    out = ua.take_outgoing()
    assert [r.status for r in responses(out)] == [487]
    assert [r.method for r in requests(out)] == ["BYE"]


def test_timers_run_on_any_clock_origin() -> None:
    ua = make_ua()
    ua.receive_datagram(request("INVITE", body=SDP_OFFER), CALLER, -0.5)
    ua.answer("call-1", ANSWER, -0.5)
    assert ua.next_deadline() == 0.0  # a deadline at exactly zero is still a deadline
