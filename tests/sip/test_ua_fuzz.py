"""The user agent never raises on mutated requests, and stays bounded (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sip.events import Rejected
from sip.ua import UaConfig, UserAgent
from tests.sip.messages import CALLER, SDP_OFFER, request

_SEEDS = [
    request("INVITE", body=SDP_OFFER),
    request("BYE", to_tag="t1", cseq=2),
    request("CANCEL"),
    request("NOTIFY", to_tag="t1", cseq=3, body=b"SIP/2.0 200 OK", content_type="message/sipfrag"),
    request("INFO", to_tag="t1", cseq=4, body=b"Signal=1", content_type="application/dtmf-relay"),
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(range(len(_SEEDS))), st.integers(0, 600), st.binary(max_size=6)),
        min_size=1,
        max_size=8,
    )
)
def test_mutated_dialogs_never_raise(steps: list[tuple[int, int, bytes]]) -> None:
    ua = UserAgent(UaConfig("127.0.0.1", 5080, max_dialogs=4), token=lambda: "t1")
    now = 0.0
    for index, position, noise in steps:
        seed = _SEEDS[index]
        data = seed[:position] + noise + seed[position + len(noise) :]
        for event in ua.receive_datagram(data, CALLER, now):
            if isinstance(event, Rejected):
                assert event.reason
        ua.answer("call-1", b"v=0\r\n", now)
        now += 1.0
        ua.handle_timeout(now)
        assert len(ua.dialogs) <= 4
        for out, destination in ua.take_outgoing():
            assert out and destination
    ua.handle_timeout(now + 100)  # may end an unacknowledged call with a BYE...
    ua.handle_timeout(now + 200)  # ...which gives up by now: every timer is gone
    assert ua.next_deadline() is None
