"""SDP parsing/generation (strict, fuzzed) and RFC 3264 offer/answer for G.711 + DTMF."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.sdp import (
    DIRECTIONS,
    MAX_SDP_BYTES,
    MediaDescription,
    RtpMap,
    SdpError,
    SdpNegotiationError,
    SessionDescription,
    parse_sdp,
)
from media.sdp_negotiation import LocalMedia, apply_answer, create_answer, create_offer

# A typical offer from a SIP phone (Linphone/baresip shape): PCMU, PCMA, G722 and DTMF.
PHONE_OFFER = (
    "v=0\r\n"
    "o=- 3912345678 3912345678 IN IP4 192.0.2.20\r\n"
    "s=Talk\r\n"
    "c=IN IP4 192.0.2.20\r\n"
    "t=0 0\r\n"
    "a=rtcp-xr:rcvr-rtt=all:10000\r\n"
    "m=audio 7078 RTP/AVP 9 0 8 101\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "a=rtcp:7079\r\n"
    "a=sendrecv\r\n"
    "m=video 9078 RTP/AVP 96\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
)
US = LocalMedia("198.51.100.1", 20000, session_id=7, session_version=1)


def test_parse_phone_offer() -> None:
    sdp = parse_sdp(PHONE_OFFER)
    assert sdp.connection == "192.0.2.20" and sdp.session_name == "Talk"
    audio, video = sdp.media
    assert (audio.port, audio.formats, audio.ptime_ms) == (7078, ("9", "0", "8", "101"), 20)
    assert audio.rtpmap(0) == RtpMap(0, "PCMU", 8000)  # static, no rtpmap line needed
    assert audio.rtpmap(101) == RtpMap(101, "telephone-event", 8000)
    assert audio.fmtps == ((101, "0-15"),)
    assert (audio.direction, audio.rtcp_port) == ("sendrecv", 7079)
    assert video.media == "video" and video.rtpmap(96) == RtpMap(96, "VP8", 90000)
    assert sdp.attributes == (("rtcp-xr", "rcvr-rtt=all:10000"),)


def test_serialize_parse_round_trip() -> None:
    sdp = parse_sdp(PHONE_OFFER)
    again = parse_sdp(sdp.serialize())
    assert again == sdp
    assert sdp.serialize().endswith("\r\n") and "\n\n" not in sdp.serialize()


def test_bare_lf_line_endings_are_accepted() -> None:
    assert parse_sdp(PHONE_OFFER.replace("\r\n", "\n")) == parse_sdp(PHONE_OFFER)


def _without(line: str) -> str:
    return PHONE_OFFER.replace(line + "\r\n", "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "missing mandatory v="),
        (PHONE_OFFER.replace("v=0", "v=1"), "start with v=0"),
        (_without("s=Talk"), "missing mandatory s="),
        (_without("t=0 0"), "missing mandatory t="),
        (_without("c=IN IP4 192.0.2.20"), "no c= line"),
        (PHONE_OFFER.replace("o=- 3912345678 ", "o="), "o= needs 6 fields"),
        (PHONE_OFFER.replace("s=Talk", "s=Talk\r\nx=what"), "unknown or out of place"),
        (PHONE_OFFER.replace("s=Talk", "s=Talk\r\ns=again"), "out of order or repeated"),
        (PHONE_OFFER.replace("t=0 0", "t=0 0\r\no=late"), "out of order"),
        (PHONE_OFFER.replace("c=IN IP4 192.0.2.20", "c=IN IP4 nowhere"), "not an IP address"),
        (PHONE_OFFER.replace("c=IN IP4 192.0.2.20", "c=IN IP6 192.0.2.20"), "says IP6"),
        (PHONE_OFFER.replace("c=IN IP4 192.0.2.20", "c=IN IP4"), "must be 'IN IP4"),
        (PHONE_OFFER.replace("7078", "70780"), "m= port"),
        (PHONE_OFFER.replace("9 0 8 101", "9 0 8 abc"), "payload type"),
        (PHONE_OFFER.replace("9 0 8 101", "9 0 8 128"), "payload type"),
        (PHONE_OFFER.replace("m=video 9078 RTP/AVP 96", "m=video 9078"), "m= needs"),
        (PHONE_OFFER.replace("G722/8000", "G722"), "rtpmap must be"),
        (PHONE_OFFER.replace("a=rtpmap:9 ", "a=rtpmap:33 "), "not in the m= line"),
        (PHONE_OFFER.replace("a=rtpmap:9 G722/8000", "a=rtpmap:9 G722/x"), "clock rate"),
        (PHONE_OFFER.replace("a=ptime:20", "a=ptime:fast"), "ptime"),
        (PHONE_OFFER.replace("a=ptime:20", "a=ptime"), "needs a value"),
        (PHONE_OFFER.replace("a=sendrecv", "a=sendrecv\r\na=sendonly"), "direction given twice"),
        (PHONE_OFFER.replace("s=Talk", "s=Ta\x00lk"), "control character"),
        (PHONE_OFFER.replace("s=Talk", "S=Talk"), "expected 'x=value'"),
        (PHONE_OFFER + "m=audio\r\n", "m= needs"),
        (PHONE_OFFER + "a=" + "x" * MAX_SDP_BYTES + "\r\n", "exceeds"),
    ],
)
def test_malformed_sdp_is_rejected_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(SdpError, match=message):
        parse_sdp(text)


def test_oversized_and_non_utf8_bytes_are_rejected() -> None:
    with pytest.raises(SdpError, match="exceeds"):
        parse_sdp(b"v=0\r\n" * 10_000)
    with pytest.raises(SdpError, match="UTF-8"):
        parse_sdp(b"v=0\r\ns=\xff\r\n")


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_sdp_error(data: bytes) -> None:
    try:
        parse_sdp(data)
    except SdpError:
        pass
    else:
        assert data.startswith(b"v=0")


@given(st.lists(st.sampled_from(PHONE_OFFER.split("\r\n")), max_size=20))
def test_shuffled_real_lines_raise_only_sdp_error(lines: list[str]) -> None:
    try:
        sdp = parse_sdp("\r\n".join(lines))
    except SdpError:
        return
    assert parse_sdp(sdp.serialize()) == sdp


def test_answer_picks_our_preferred_codec_and_keeps_offered_numbers() -> None:
    answer, media = create_answer(parse_sdp(PHONE_OFFER), US)
    assert (media.codec, media.payload_type, media.telephone_event_pt) == ("PCMU", 0, 101)
    assert (media.remote_address, media.remote_port, media.ptime_ms) == ("192.0.2.20", 7078, 20)
    assert media.direction == "sendrecv" and not media.on_hold
    parsed = parse_sdp(answer.serialize())
    audio, video = parsed.media
    assert audio.formats == ("0", "101") and audio.port == 20000
    assert video.port == 0  # the stream we cannot take is refused, the line kept (3264 6)
    assert parsed.connection == "198.51.100.1"
    assert parsed.origin == "callbridge 7 1 IN IP4 198.51.100.1"


def test_answer_takes_wideband_g722_when_we_prefer_it() -> None:
    local = LocalMedia("198.51.100.1", 20000, codecs=("G722", "PCMU"))
    answer, media = create_answer(parse_sdp(PHONE_OFFER), local)
    assert (media.codec, media.payload_type) == ("G722", 9)
    assert parse_sdp(answer.serialize()).media[0].formats == ("9", "101")


def test_answer_prefers_pcma_when_we_do() -> None:
    local = LocalMedia("198.51.100.1", 20000, codecs=("PCMA", "PCMU"))
    _, media = create_answer(parse_sdp(PHONE_OFFER), local)
    assert (media.codec, media.payload_type) == ("PCMA", 8)


@pytest.mark.parametrize(
    ("offered", "ours"),
    [("sendonly", "recvonly"), ("recvonly", "sendonly"), ("inactive", "inactive")],
)
def test_hold_directions_are_mirrored(offered: str, ours: str) -> None:
    offer = parse_sdp(PHONE_OFFER.replace("a=sendrecv", f"a={offered}"))
    answer, media = create_answer(offer, US)
    assert media.direction == ours and parse_sdp(answer.serialize()).media[0].direction == ours
    assert media.on_hold == (ours != "sendonly")


def test_old_style_hold_by_null_address() -> None:
    offer = parse_sdp(PHONE_OFFER.replace("c=IN IP4 192.0.2.20", "c=IN IP4 0.0.0.0"))
    assert create_answer(offer, US)[1].on_hold


def test_offer_without_g711_is_not_acceptable() -> None:
    offer = parse_sdp(
        PHONE_OFFER.replace("9 0 8 101", "18 101").replace("rtpmap:9 G722", "rtpmap:18 G729")
    )
    with pytest.raises(SdpNegotiationError, match="no audio stream"):
        create_answer(offer, US)


def test_dtmf_at_another_clock_rate_is_not_used() -> None:
    text = PHONE_OFFER.replace("telephone-event/8000", "telephone-event/48000")
    assert create_answer(parse_sdp(text), US)[1].telephone_event_pt is None


def test_offer_then_answer_from_a_peer() -> None:
    offer = create_offer(LocalMedia("198.51.100.1", 20000, ptime_ms=30))
    parsed = parse_sdp(offer.serialize())
    assert parsed.media[0].formats == ("0", "8", "9", "101") and parsed.media[0].ptime_ms == 30
    assert parsed.media[0].rtpmap(9) == RtpMap(9, "G722", 8000)
    peer = LocalMedia("192.0.2.20", 7078, codecs=("PCMA",), direction="recvonly")
    answer, theirs = create_answer(parsed, peer)
    assert (theirs.codec, theirs.direction) == ("PCMA", "recvonly")
    ours = apply_answer(parsed, parse_sdp(answer.serialize()))
    assert (ours.codec, ours.payload_type, ours.remote_port) == ("PCMA", 8, 7078)
    assert ours.direction == "sendonly"  # the peer only receives: we only send
    assert ours.ptime_ms == 30


def test_answer_that_breaks_the_rules_is_refused() -> None:
    offer = parse_sdp(create_offer(US).serialize())
    stray = PHONE_OFFER.replace("m=video 9078 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n", "")
    with pytest.raises(SdpNegotiationError, match="payload types"):
        apply_answer(
            offer,
            parse_sdp(
                stray.replace("9 0 8 101", "0 8 101 96").replace(
                    "a=rtpmap:9 G722/8000", "a=rtpmap:96 opus/48000/2"
                )
            ),
        )  # 96 was never offered
    with pytest.raises(SdpNegotiationError, match="as many m= lines"):
        apply_answer(offer, parse_sdp(PHONE_OFFER))
    rejected = stray.replace("m=audio 7078 RTP/AVP 9 0 8 101", "m=audio 0 RTP/AVP 9 0 8 101")
    with pytest.raises(SdpNegotiationError, match="accepted no audio"):
        apply_answer(offer, parse_sdp(rejected))


@pytest.mark.parametrize(
    "kwargs", [{"codecs": ("G729",)}, {"codecs": ()}, {"direction": "up"}, {"ptime_ms": 25}]
)
def test_bad_local_media_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(SdpError):
        LocalMedia("198.51.100.1", 20000, **kwargs)  # type: ignore[arg-type]


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(
    lambda name: name not in ("rtpmap", "fmtp", "ptime", "rtcp", "rtcp-mux", *DIRECTIONS)
)
_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=30)
_address = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(lambda a: str(a.exploded))
)


_params = _text.filter(str.strip)


@st.composite
def _media(draw: st.DrawFn) -> MediaDescription:
    pts = draw(st.lists(st.integers(0, 127), min_size=1, max_size=6, unique=True))
    mapped = draw(st.lists(st.sampled_from(pts), unique=True))
    rtpmaps = tuple(
        RtpMap(pt, draw(st.sampled_from(["PCMU", "opus", "telephone-event"])),
               draw(st.sampled_from([8000, 16000, 48000])), draw(st.integers(1, 2)))
        for pt in mapped
    )  # fmt: skip
    return MediaDescription(
        media=draw(st.sampled_from(["audio", "video"])),
        port=draw(st.integers(0, 65535)),
        proto="RTP/AVP",
        formats=tuple(map(str, pts)),
        connection=draw(st.none() | _address),
        rtpmaps=rtpmaps,
        fmtps=tuple(
            (pt, draw(_text.filter(str.strip))) for pt in draw(st.lists(st.sampled_from(pts)))
        ),
        ptime_ms=draw(st.none() | st.integers(1, 1000)),
        direction=draw(st.none() | st.sampled_from(DIRECTIONS)),
        rtcp_port=draw(st.none() | st.integers(0, 65535)),
        rtcp_mux=draw(st.booleans()),
        attributes=tuple(draw(st.lists(st.tuples(_token, st.none() | _text), max_size=3))),
    )


@given(
    st.lists(_media(), max_size=3),
    _address,
    st.none() | st.sampled_from(DIRECTIONS),
    st.lists(st.tuples(_token, st.none() | _text), max_size=3),
)
def test_generated_descriptions_round_trip(
    media: list[MediaDescription],
    address: str,
    direction: str | None,
    attributes: list[tuple[str, str | None]],
) -> None:
    sdp = SessionDescription(
        origin=f"- 1 2 IN IP{6 if ':' in address else 4} {address}",
        session_name="call",
        connection=address,
        direction=direction,
        media=tuple(media),
        attributes=tuple(attributes),
    )
    assert parse_sdp(sdp.serialize()) == sdp
    assert parse_sdp(sdp.serialize().encode()) == sdp
