"""media.chan_websocket: both control formats as Asterisk writes them, commands, bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.chan_websocket import (
    MAX_COMMAND_BYTES,
    AsteriskError,
    BufferingCompleted,
    ChanWebsocketConnection,
    ChanWebsocketError,
    DtmfEnd,
    MarkProcessed,
    MediaFrame,
    MediaStart,
    MediaXoff,
    MediaXon,
    QueueDrained,
    Status,
    UnknownNotice,
    media_start_text,
)

# What a real Asterisk sent (docs/measurements.md#asterisk-wire), and the same in
# chan_websocket.c's JSON shape.
PLAIN_START = (
    "MEDIA_START connection_id:media1 channel:WebSocket/media1/0x7f3a2c001234 "
    "channel_id:1764062400.42 format:slin16 optimal_frame_size:640 ptime:20"
)
JSON_START = json.dumps(
    {
        "event": "MEDIA_START",
        "connection_id": "media1",
        "channel": "WebSocket/media1/0x7f3a2c001234",
        "channel_id": "1764062400.42",
        "format": "ulaw",
        "optimal_frame_size": 160,
        "ptime": 20,
        "channel_variables": {"MEDIA_WEBSOCKET_CONNECTION_ID": "media1", "AGENT": "support"},
    },
    separators=(",", ":"),
)


def plain() -> ChanWebsocketConnection:
    conn = ChanWebsocketConnection()
    conn.receive_text(PLAIN_START)
    return conn


def jsonc() -> ChanWebsocketConnection:
    conn = ChanWebsocketConnection()
    conn.receive_text(JSON_START)
    return conn


def test_plain_media_start_as_asterisk_sent_it() -> None:
    conn = ChanWebsocketConnection()
    start = conn.receive_text(PLAIN_START)
    assert start == MediaStart(
        "media1", "WebSocket/media1/0x7f3a2c001234", "1764062400.42", "slin16", 640, 20
    )
    assert start.rate_hz == 16000 and start.bytes_per_sample == 2
    assert conn.control_format == "plain-text"


def test_json_media_start_with_channel_variables() -> None:
    conn = ChanWebsocketConnection()
    start = conn.receive_text(JSON_START)
    assert isinstance(start, MediaStart)
    assert start.format == "ulaw" and start.optimal_frame_size == 160 and start.rate_hz == 8000
    assert start.channel_variables["AGENT"] == "support"
    assert conn.control_format == "json"


def test_older_media_start_without_ptime_or_channel_id_fields_defaults() -> None:
    # The first documented shape: no ptime. channel_id is required by us; Asterisk sends it.
    conn = ChanWebsocketConnection()
    start = conn.receive_text(
        "MEDIA_START connection_id:c1 channel:WebSocket/c1/0x1 channel_id:1.1 format:ulaw "
        "optimal_frame_size:160"
    )
    assert isinstance(start, MediaStart) and start.ptime_ms == 20


@pytest.mark.parametrize(
    ("make", "texts"),
    [
        (
            plain,
            [
                "MEDIA_XOFF",
                "MEDIA_XON",
                "QUEUE_DRAINED",
                "DTMF_END digit:5 channel_id:1.42",
                "MEDIA_MARK_PROCESSED turn-1",
                "MEDIA_BUFFERING_COMPLETED",
                "STATUS channel_id:1.42 queue_length:43 xon_level:800 xoff_level:900 "
                "queue_full:false bulk_media:true media_paused:false",
                "ERROR channel_id:1.42 error_text:MARK_MEDIA not supported in passthrough mode",
                "MEDIA_NEW_THING channel_id:1.42",
            ],
        ),
        (
            jsonc,
            [
                '{"event":"MEDIA_XOFF","channel_id":"1.42"}',
                '{"event":"MEDIA_XON","channel_id":"1.42"}',
                '{"event":"QUEUE_DRAINED","channel_id":"1.42"}',
                '{"event":"DTMF_END","channel_id":"1.42","digit":"5"}',
                '{"event":"MEDIA_MARK_PROCESSED","channel_id":"1.42","correlation_id":"turn-1"}',
                '{"event":"MEDIA_BUFFERING_COMPLETED","channel_id":"1.42","correlation_id":""}',
                '{"event":"STATUS","channel_id":"1.42","queue_length":43,"xon_level":800,'
                '"xoff_level":900,"queue_full":false,"bulk_media":true,"media_paused":false}',
                '{"event":"ERROR","channel_id":"1.42","error_text":"MARK_MEDIA not supported '
                'in passthrough mode"}',
                '{"event":"MEDIA_NEW_THING","channel_id":"1.42"}',
            ],
        ),
    ],
)
def test_every_notification_in_both_formats(make: Any, texts: list[str]) -> None:
    conn = make()
    events = [conn.receive_text(t) for t in texts[:1]]
    assert conn.xoff
    events += [conn.receive_text(t) for t in texts[1:]]
    assert not conn.xoff
    assert events == [
        MediaXoff(),
        MediaXon(),
        QueueDrained(),
        DtmfEnd("5"),
        MarkProcessed("turn-1"),
        BufferingCompleted(""),
        Status(43, 800, 900, False, True, False),
        AsteriskError("MARK_MEDIA not supported in passthrough mode"),
        UnknownNotice("MEDIA_NEW_THING"),
    ]


def test_binary_media_is_checked_against_the_format() -> None:
    conn = plain()  # slin16
    assert conn.receive_binary(b"\x01\x02" * 320) == MediaFrame(b"\x01\x02" * 320)
    with pytest.raises(ChanWebsocketError) as info:
        conn.receive_binary(b"\x01" * 641)
    assert info.value.reason == "bad_payload_size"
    assert jsonc().receive_binary(b"\xff" * 161) == MediaFrame(b"\xff" * 161)  # ulaw: any length


@pytest.mark.parametrize("size", [0, 65_502])
def test_empty_or_oversized_media_is_refused(size: int) -> None:
    with pytest.raises(ChanWebsocketError) as info:
        plain().receive_binary(b"\x00" * size)
    assert info.value.reason == "bad_payload_size"


def test_commands_in_plain_text() -> None:
    conn = plain()
    assert conn.flush_media() == "FLUSH_MEDIA"
    assert conn.mark_media("turn-1") == "MARK_MEDIA turn-1"
    assert conn.hangup() == "HANGUP"
    assert conn.answer() == "ANSWER"
    assert conn.report_queue_drained() == "REPORT_QUEUE_DRAINED"
    assert conn.get_status() == "GET_STATUS"
    assert conn.pause_media() == "PAUSE_MEDIA" and conn.continue_media() == "CONTINUE_MEDIA"
    assert conn.start_media_buffering() == "START_MEDIA_BUFFERING"
    assert conn.stop_media_buffering("f1") == "STOP_MEDIA_BUFFERING f1"
    assert conn.stop_media_buffering() == "STOP_MEDIA_BUFFERING"


def test_commands_in_json() -> None:
    conn = jsonc()
    assert json.loads(conn.flush_media()) == {"command": "FLUSH_MEDIA"}
    assert json.loads(conn.mark_media("turn 1")) == {
        "command": "MARK_MEDIA",
        "correlation_id": "turn 1",
    }
    assert json.loads(conn.hangup()) == {"command": "HANGUP"}


def test_commands_asterisk_would_ignore_are_refused_here() -> None:
    conn = plain()
    with pytest.raises(ValueError, match="128"):
        conn.mark_media("x" * MAX_COMMAND_BYTES)
    for bad in ("", " lead", "trail ", "two\nlines"):
        with pytest.raises(ValueError):
            conn.mark_media(bad)
    with pytest.raises(RuntimeError):
        ChanWebsocketConnection().flush_media()


BAD_BEFORE_START = [
    ("MEDIA_XON", "before_start"),
    ('{"event":"DTMF_END","digit":"1"}', "before_start"),
    (
        "MEDIA_START connection_id:c channel:x channel_id:1 format:opus optimal_frame_size:0",
        "unsupported_format",
    ),
    (
        "MEDIA_START connection_id:c channel:x channel_id:1 format:ulaw optimal_frame_size:abc",
        "bad_field",
    ),
    (
        "MEDIA_START connection_id:c channel:x channel_id:1 format:ulaw optimal_frame_size:0",
        "bad_field",
    ),
    ("MEDIA_START connection_id:c channel:x format:ulaw optimal_frame_size:160", "missing_field"),
    (
        "MEDIA_START connection_id:c channel:x channel_id:1 format:ulaw optimal_frame_size:160 "
        "ptime:0",
        "bad_field",
    ),
    (
        '{"event":"MEDIA_START","connection_id":"c","channel":"x","channel_id":"1",'
        '"format":"ulaw","optimal_frame_size":true}',
        "bad_field",
    ),
    (
        '{"event":"MEDIA_START","connection_id":"c","channel":"x","channel_id":"1",'
        '"format":"ulaw","optimal_frame_size":160,"channel_variables":[1]}',
        "bad_field",
    ),
    ('{"event":"MEDIA_START"', "bad_json"),
    ('["MEDIA_START"]', "bad_message"),  # not an object: read as a plain line
    ("", "bad_message"),
    ("media_start connection_id:c", "bad_message"),
    ("x" * 70_000, "oversized"),
]


@pytest.mark.parametrize(("text", "reason"), BAD_BEFORE_START)
def test_bad_input_before_start(text: str, reason: str) -> None:
    with pytest.raises(ChanWebsocketError) as info:
        ChanWebsocketConnection().receive_text(text)
    assert info.value.reason == reason


def test_media_before_start_is_refused() -> None:
    with pytest.raises(ChanWebsocketError) as info:
        ChanWebsocketConnection().receive_binary(b"\x00" * 160)
    assert info.value.reason == "before_start"


BAD_AFTER_START = [
    (plain, PLAIN_START, "duplicate_start"),
    (plain, "DTMF_END digit:55", "bad_field"),
    (plain, "DTMF_END channel_id:1", "missing_field"),
    (
        plain,
        "STATUS queue_length:1 xon_level:800 xoff_level:900 queue_full:maybe "
        "bulk_media:false media_paused:false",
        "bad_field",
    ),
    (plain, '{"event":"MEDIA_XON"}', "bad_message"),  # a format switch mid-call
    (jsonc, "MEDIA_XON", "bad_json"),
    (jsonc, '{"event":"MEDIA_MARK_PROCESSED","correlation_id":7}', "bad_field"),
    (jsonc, '{"event":"STATUS","queue_length":"x"}', "bad_field"),
    (
        jsonc,
        '{"event":"STATUS","queue_length":1,"xon_level":1,"xoff_level":1,'
        '"queue_full":1,"bulk_media":false,"media_paused":false}',
        "bad_field",
    ),
    (jsonc, '{"event":null}', "bad_json"),
]


@pytest.mark.parametrize(("make", "text", "reason"), BAD_AFTER_START)
def test_bad_input_after_start(make: Any, text: str, reason: str) -> None:
    with pytest.raises(ChanWebsocketError) as info:
        make().receive_text(text)
    assert info.value.reason == reason


@pytest.mark.parametrize("fmt", ["plain-text", "json"])
def test_media_start_text_round_trips(fmt: Any) -> None:
    start = MediaStart(
        "c1", "WebSocket/c1/0x1", "1.1", "slin16", 640, 20, {"A": "b"} if fmt == "json" else {}
    )
    conn = ChanWebsocketConnection()
    assert conn.receive_text(media_start_text(start, fmt)) == start
    assert conn.control_format == fmt


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["fresh", "plain", "json"]))
def test_random_text_raises_only_chan_websocket_error(text: str, state: str) -> None:
    conn = {"fresh": ChanWebsocketConnection, "plain": plain, "json": jsonc}[state]()
    try:
        conn.receive_text(text)
    except ChanWebsocketError as exc:
        assert exc.reason


_keyword = st.sampled_from(
    [
        "MEDIA_START",
        "DTMF_END",
        "STATUS",
        "MEDIA_XON",
        "ERROR",
        "MEDIA_MARK_PROCESSED",
        "QUEUE_DRAINED",
    ]
)
_field = st.tuples(
    st.sampled_from(
        [
            "connection_id",
            "channel",
            "channel_id",
            "format",
            "optimal_frame_size",
            "ptime",
            "digit",
            "queue_length",
            "queue_full",
            "error_text",
            "correlation_id",
            "channel_variables",
        ]
    ),
    st.one_of(
        st.text(max_size=8),
        st.integers(),
        st.booleans(),
        st.none(),
        st.sampled_from(["ulaw", "slin16", "160", "true"]),
        st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    ),
)


@settings(max_examples=300, deadline=None)
@given(_keyword, st.lists(_field, max_size=7), st.booleans(), st.binary(max_size=40))
def test_asterisk_like_messages_raise_only_chan_websocket_error(
    event: str, fields: list[tuple[str, Any]], as_json: bool, media: bytes
) -> None:
    if as_json:
        text = json.dumps({"event": event, **dict(fields)})
    else:
        text = " ".join([event, *(f"{k}:{v}" for k, v in fields)])
    for conn in (ChanWebsocketConnection(), plain(), jsonc()):
        try:
            conn.receive_text(text)
            conn.receive_binary(media)
        except ChanWebsocketError as exc:
            assert exc.reason


def test_outbound_media_is_padded_to_whole_frames_with_the_formats_silence() -> None:
    slin16 = plain()  # optimal 640
    assert slin16.media(b"\x01\x00" * 320) == [b"\x01\x00" * 320]
    assert slin16.media(b"\x01\x00" * 100) == [b"\x01\x00" * 100 + bytes(440)]
    ulaw = jsonc()  # optimal 160
    assert ulaw.media(b"\x10" * 170) == [b"\x10" * 170 + b"\xff" * 150]
    alaw = ChanWebsocketConnection()
    alaw.receive_text(media_start_text(MediaStart("c", "ch", "1", "alaw", 160, 20)))
    assert alaw.media(b"\x10") == [b"\x10" + b"\xd5" * 159]
    with pytest.raises(RuntimeError):
        ChanWebsocketConnection().media(b"\x00")


def test_outbound_media_over_asterisks_limit_is_split_on_frame_boundaries() -> None:
    messages = plain().media(bytes(640 * 150))  # 3 s of slin16, 96,000 bytes
    assert [len(m) for m in messages] == [640 * 102, 640 * 48]
    assert all(len(m) <= 65_500 for m in messages)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=70_000))
def test_outbound_media_always_whole_frames_within_the_limit(audio: bytes) -> None:
    messages = jsonc().media(audio)
    assert all(len(m) % 160 == 0 and 0 < len(m) <= 65_500 for m in messages)
    assert b"".join(messages)[: len(audio)] == audio
