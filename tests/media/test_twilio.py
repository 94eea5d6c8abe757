"""media.twilio: Twilio Media Streams, both roles, every bad input, and random text."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.twilio import (
    MAX_MESSAGE_CHARS,
    Clear,
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    OutboundMark,
    OutboundMedia,
    Start,
    Stop,
    TwilioPeer,
    TwilioProtocolError,
    TwilioStream,
)

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"

# Shapes exactly as Twilio's documentation shows them (numbers as strings).
TWILIO_CONNECTED = '{"event": "connected", "protocol": "Call", "version": "1.0.0"}'
TWILIO_START = json.dumps(
    {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": "AC123",
            "streamSid": SID,
            "callSid": "CA123",
            "tracks": ["inbound", "outbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"agent": "support", "FirstName": "Jane"},
        },
        "streamSid": SID,
    }
)
TWILIO_MEDIA = json.dumps(
    {
        "event": "media",
        "sequenceNumber": "2",
        "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": "AAECAw=="},
        "streamSid": SID,
    }
)


def started(**kwargs: Any) -> TwilioStream:
    stream = TwilioStream(**kwargs)
    stream.receive(TWILIO_CONNECTED)
    stream.receive(TWILIO_START)
    return stream


def test_documented_messages_parse_into_typed_events() -> None:
    stream = TwilioStream()
    assert stream.receive(TWILIO_CONNECTED) == Connected("Call", "1.0.0")
    start = stream.receive(TWILIO_START)
    assert isinstance(start, Start)
    assert start.stream_sid == SID and start.call_sid == "CA123" and start.account_sid == "AC123"
    assert start.tracks == ("inbound", "outbound")
    assert start.custom_parameters == {"agent": "support", "FirstName": "Jane"}
    assert start.media_format == MediaFormat("audio/x-mulaw", 8000, 1)
    media = stream.receive(TWILIO_MEDIA)
    assert media == Media(
        ulaw=b"\x00\x01\x02\x03", sequence=2, chunk=1, timestamp_ms=5, track="inbound"
    )
    dtmf = {
        "event": "dtmf",
        "streamSid": SID,
        "sequenceNumber": "3",
        "dtmf": {"track": "inbound_track", "digit": "#"},
    }
    assert stream.receive(json.dumps(dtmf)) == Dtmf("#", "inbound_track", 3)
    mark = {"event": "mark", "sequenceNumber": "4", "streamSid": SID, "mark": {"name": "m1"}}
    assert stream.receive(json.dumps(mark)) == Mark("m1", 4)
    stop = {
        "event": "stop",
        "sequenceNumber": "5",
        "streamSid": SID,
        "stop": {"accountSid": "AC123", "callSid": "CA123"},
    }
    assert stream.receive(json.dumps(stop)) == Stop(5)
    assert stream.stopped and stream.sequence_gaps == 0


def test_integers_where_twilio_writes_strings_are_accepted() -> None:
    stream = started()
    msg = {
        "event": "media",
        "sequenceNumber": 2,
        "streamSid": SID,
        "media": {"track": "inbound", "chunk": 1, "timestamp": 20, "payload": "/w=="},
    }
    event = stream.receive(json.dumps(msg))
    assert isinstance(event, Media) and event.timestamp_ms == 20 and event.ulaw == b"\xff"


def test_start_without_connected_and_without_optional_fields() -> None:
    stream = TwilioStream()
    peer = TwilioPeer(SID)
    start = stream.receive(peer.start())
    assert isinstance(start, Start) and start.custom_parameters == {}
    assert stream.receive(peer.media(b"\x7f" * 160)) == Media(b"\x7f" * 160, 2, 1, 0, "inbound")


def test_sequence_gaps_are_counted_not_fatal() -> None:
    stream = TwilioStream()
    peer = TwilioPeer(SID)
    stream.receive(peer.start())
    stream.receive(peer.media(b"\x00" * 160))
    peer.media(b"\x00" * 160)  # lost in transit
    peer.media(b"\x00" * 160)  # lost in transit
    event = stream.receive(peer.media(b"\x00" * 160))
    assert isinstance(event, Media) and event.sequence == 5 and event.chunk == 4
    assert event.timestamp_ms == 60
    assert stream.sequence_gaps == 2


def test_outbound_messages_have_twilios_shape() -> None:
    stream = started()
    assert json.loads(stream.media(b"\x01\x02")) == {
        "event": "media",
        "streamSid": SID,
        "media": {"payload": "AQI="},
    }
    assert json.loads(stream.mark("greeting")) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": "greeting"},
    }
    assert json.loads(stream.clear()) == {"event": "clear", "streamSid": SID}
    assert list(stream.pending_marks) == ["greeting"]
    echo = {"event": "mark", "sequenceNumber": "2", "streamSid": SID, "mark": {"name": "greeting"}}
    stream.receive(json.dumps(echo))
    assert not stream.pending_marks


def test_outbound_before_start_and_empty_media_are_our_bugs() -> None:
    with pytest.raises(RuntimeError):
        TwilioStream().media(b"\x00")
    with pytest.raises(ValueError, match="empty"):
        started().media(b"")


def _media(payload: str, sid: str = SID) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": "2",
            "streamSid": sid,
            "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": payload},
        }
    )


BAD_AFTER_START = [
    ("{not json", "bad_json"),
    ("[1, 2]", "bad_json"),
    ('"media"', "bad_json"),
    ("[" * 70_000, "oversized"),
    ("[" * 50_000, "bad_json"),
    ("[" * 5_000 + "]" * 5_000, "bad_json"),  # deep nesting: RecursionError inside json
    ('{"sequenceNumber": "2"}', "missing_field"),
    ('{"event": 7}', "missing_field"),
    ('{"event": "transcript", "sequenceNumber": "2"}', "unknown_event"),
    ('{"event": "media", "streamSid": "' + SID + '"}', "missing_field"),
    (_media("not base64!"), "bad_base64"),
    (_media("AAE"), "bad_base64"),  # missing padding
    (_media("8J+YgA==\n"), "bad_base64"),
    (_media(""), "bad_payload_size"),
    (_media(base64.b64encode(b"\x00" * 1601).decode()), "bad_payload_size"),
    (_media("AAECAw==", sid="MZother"), "stream_mismatch"),
    (TWILIO_START, "duplicate_start"),
    (TWILIO_CONNECTED, "out_of_order"),
    (json.dumps({"event": "media", "sequenceNumber": "-1", "streamSid": SID}), "bad_field"),
    (json.dumps({"event": "media", "sequenceNumber": "٣", "streamSid": SID}), "bad_field"),
    (json.dumps({"event": "media", "sequenceNumber": True, "streamSid": SID}), "bad_field"),
    (json.dumps({"event": "media", "sequenceNumber": "9" * 400, "streamSid": SID}), "bad_field"),
    (
        json.dumps(
            {"event": "dtmf", "sequenceNumber": "2", "streamSid": SID, "dtmf": {"digit": "12"}}
        ),
        "bad_field",
    ),
    (
        json.dumps({"event": "mark", "sequenceNumber": "2", "streamSid": SID, "mark": "m"}),
        "missing_field",
    ),
]


@pytest.mark.parametrize(("text", "reason"), BAD_AFTER_START)
def test_bad_input_after_start_raises_one_error_type(text: str, reason: str) -> None:
    with pytest.raises(TwilioProtocolError) as info:
        started().receive(text)
    assert info.value.reason == reason


def test_oversized_message_is_refused_before_parsing() -> None:
    text = _media("A" * MAX_MESSAGE_CHARS)
    with pytest.raises(TwilioProtocolError) as info:
        started().receive(text)
    assert info.value.reason == "oversized"


def test_binary_frame_is_refused() -> None:
    with pytest.raises(TwilioProtocolError) as info:
        started().receive(b"\x00" * 160)
    assert info.value.reason == "binary_message"


@pytest.mark.parametrize("event", ["media", "dtmf", "mark", "stop"])
def test_events_before_start_are_refused(event: str) -> None:
    stream = TwilioStream()
    stream.receive(TWILIO_CONNECTED)
    msg = {"event": event, "sequenceNumber": "1", "streamSid": SID}
    with pytest.raises(TwilioProtocolError) as info:
        stream.receive(json.dumps(msg))
    assert info.value.reason == "before_start"


@pytest.mark.parametrize(
    ("fmt", "reason"),
    [
        ({"encoding": "audio/x-alaw", "sampleRate": 8000, "channels": 1}, "bad_media_format"),
        ({"encoding": "audio/x-mulaw", "sampleRate": 16000, "channels": 1}, "bad_media_format"),
        ({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 2}, "bad_media_format"),
        ({"encoding": "audio/x-mulaw"}, "missing_field"),
        ("audio/x-mulaw", "missing_field"),
    ],
)
def test_start_with_a_format_we_cannot_play_is_refused(fmt: Any, reason: str) -> None:
    start = json.loads(TWILIO_START)
    start["start"]["mediaFormat"] = fmt
    with pytest.raises(TwilioProtocolError) as info:
        TwilioStream().receive(json.dumps(start))
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("customParameters", {"agent": 5}, "bad_field"),
        ("customParameters", ["agent"], "bad_field"),
        ("tracks", "inbound", "bad_field"),
        ("streamSid", None, "missing_field"),
        ("streamSid", "", "missing_field"),
        ("callSid", 12, "bad_field"),
    ],
)
def test_start_with_bad_fields_is_refused(key: str, value: Any, reason: str) -> None:
    start = json.loads(TWILIO_START)
    start["start"][key] = value
    if key == "streamSid":
        del start["streamSid"]
    with pytest.raises(TwilioProtocolError) as info:
        TwilioStream().receive(json.dumps(start))
    assert info.value.reason == reason


def test_anything_after_stop_is_refused() -> None:
    stream = TwilioStream()
    peer = TwilioPeer(SID)
    stream.receive(peer.start())
    assert isinstance(stream.receive(peer.stop()), Stop)
    with pytest.raises(TwilioProtocolError) as info:
        stream.receive(peer.media(b"\x00" * 160))
    assert info.value.reason == "after_stop"


def test_max_media_ms_is_configurable() -> None:
    stream = TwilioStream(max_media_ms=20)
    peer = TwilioPeer(SID)
    stream.receive(peer.start())
    assert isinstance(stream.receive(peer.media(b"\x00" * 160)), Media)
    with pytest.raises(TwilioProtocolError) as info:
        stream.receive(peer.media(b"\x00" * 161))
    assert info.value.reason == "bad_payload_size"


# --- Twilio's side: parsing what an application sends -------------------------------------


def test_peer_parses_the_apps_messages() -> None:
    stream = started()
    peer = TwilioPeer(SID)
    assert peer.parse(stream.media(b"\x10\x20")) == OutboundMedia(b"\x10\x20")
    assert peer.parse(stream.mark("m")) == OutboundMark("m")
    assert peer.parse(stream.clear()) == Clear()


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        ({"event": "media", "streamSid": "MZx", "media": {"payload": "AA=="}}, "stream_mismatch"),
        ({"event": "media", "streamSid": SID, "media": {"payload": "@@"}}, "bad_base64"),
        ({"event": "start", "streamSid": SID}, "unknown_event"),
        ({"event": "mark", "streamSid": SID, "mark": {}}, "missing_field"),
    ],
)
def test_peer_refuses_bad_app_messages(msg: dict[str, Any], reason: str) -> None:
    with pytest.raises(TwilioProtocolError) as info:
        TwilioPeer(SID).parse(json.dumps(msg))
    assert info.value.reason == reason


# --- property tests: nothing but TwilioProtocolError, whatever arrives --------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_events = st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop", "clear", "x"])
_keys = st.sampled_from(
    [
        "sequenceNumber",
        "streamSid",
        "media",
        "start",
        "dtmf",
        "mark",
        "payload",
        "chunk",
        "timestamp",
        "mediaFormat",
        "digit",
        "name",
    ]
)


@st.composite
def twilio_like(draw: st.DrawFn) -> str:
    """Messages close enough to Twilio's to get past the first checks."""
    msg: dict[str, Any] = {"event": draw(_events)}
    msg.update(draw(st.dictionaries(_keys, _json_values, max_size=5)))
    if draw(st.booleans()):
        msg["streamSid"] = SID
    if draw(st.booleans()):
        msg["media"] = {
            "payload": draw(st.text(max_size=12)),
            "chunk": draw(_json_values),
            "timestamp": draw(_json_values),
        }
    return json.dumps(msg)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=50), twilio_like()))
def test_random_input_raises_only_twilio_protocol_error(text: str | bytes) -> None:
    for stream in (TwilioStream(), started()):
        try:
            event = stream.receive(text)
        except TwilioProtocolError as exc:
            assert exc.reason and isinstance(exc.reason, str)
        else:
            assert isinstance(event, (Connected, Start, Media, Dtmf, Mark, Stop))
    try:
        message = TwilioPeer(SID).parse(text)
    except TwilioProtocolError as exc:
        assert exc.reason
    else:
        assert isinstance(message, (OutboundMedia, OutboundMark, Clear))


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=1600), st.text(max_size=30))
def test_round_trip_through_both_roles(ulaw: bytes, name: str) -> None:
    stream, peer = TwilioStream(), TwilioPeer(SID)
    stream.receive(peer.start())
    media = stream.receive(peer.media(ulaw))
    assert isinstance(media, Media) and media.ulaw == ulaw
    assert peer.parse(stream.media(ulaw)) == OutboundMedia(ulaw)
    assert peer.parse(stream.mark(name)) == OutboundMark(name)
    assert stream.receive(peer.mark(name)) == Mark(name, 3)


def test_pending_marks_stay_bounded_when_a_client_never_echoes() -> None:
    stream = started()
    for n in range(1000):
        stream.mark(f"m{n}")
    assert len(stream.pending_marks) == 256 and stream.pending_marks[-1] == "m999"
