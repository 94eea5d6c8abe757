"""Where an outbound INVITE goes and what its Request-URI says, for numbers and SIP URIs."""

from __future__ import annotations

import pytest

from media.config import HostPort
from sip.config import SipConfig
from sip.headers import SipHeaderError

TRUNK = HostPort("192.0.2.10", 5070)


def _cfg(**kw: object) -> SipConfig:
    return SipConfig(HostPort("127.0.0.1", 5080), **kw)  # type: ignore[arg-type]


def test_a_number_is_a_user_at_the_trunk() -> None:
    assert _cfg(outbound=TRUNK).outbound_route("+15551234") == (
        "sip:+15551234@192.0.2.10:5070",
        "192.0.2.10",
        TRUNK,
    )


def test_a_sip_uri_is_the_request_uri_sent_through_the_trunk() -> None:
    cfg = _cfg(outbound=TRUNK)
    for uri in ("sip:bob@pbx.example.com", "sip:bob@pbx.example.com:5062;transport=udp",
                "SIPS:alice@192.0.2.99"):  # fmt: skip
        assert cfg.outbound_route(uri) == (uri, "192.0.2.10", TRUNK)


def test_a_registered_trunk_routes_sip_uris_too() -> None:
    cfg = _cfg(register="sip:cb@registrar.example.com:5090")
    assert cfg.outbound_route("sip:sales@pbx.example.com") == (
        "sip:sales@pbx.example.com",
        "registrar.example.com",
        HostPort("registrar.example.com", 5090),
    )


def test_no_trunk_no_route() -> None:
    assert _cfg().outbound_route("sip:bob@pbx.example.com") is None


@pytest.mark.parametrize(
    "bad",
    [
        "sip:bob@pbx.example.com?X-Evil=1",  # URI headers would write the INVITE's headers
        "sip:bob@pbx.example.com>;x",
        'sip:bob"@pbx',
        "sip:bob@pbx.example.com\r\nX: y",
        "sip:bob@",
    ],
)
def test_a_bad_sip_uri_is_refused_with_why(bad: str) -> None:
    with pytest.raises(SipHeaderError):
        _cfg(outbound=TRUNK).outbound_route(bad)
