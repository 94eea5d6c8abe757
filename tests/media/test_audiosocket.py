"""The AudioSocket codec on its own: every kind, both numberings, every malformed input."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.audiosocket import (
    NEED_DATA,
    Audio,
    AudioSocketConnection,
    AudioSocketError,
    CallUuid,
    Dtmf,
    ErrorFlag,
    Hangup,
    Numbering,
    PeerError,
    audio_kind,
    encode_frame,
)

UID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def events(conn: AudioSocketConnection, data: bytes) -> list[object]:
    conn.receive_data(data)
    out = []
    while (ev := conn.next_event()) is not NEED_DATA:
        out.append(ev)
        if isinstance(ev, Hangup):
            break
    return out


def started(numbering: Numbering = Numbering.CURRENT) -> AudioSocketConnection:
    conn = AudioSocketConnection(numbering)
    assert events(conn, encode_frame(0x01, UID.bytes)) == [CallUuid(UID)]
    return conn


def test_uuid_audio_dtmf_hangup_in_one_read() -> None:
    conn = AudioSocketConnection()
    data = (
        encode_frame(0x01, UID.bytes)
        + encode_frame(0x10, b"\x01\x00" * 160)
        + encode_frame(0x03, b"7")
        + encode_frame(0x00)
    )
    assert events(conn, data) == [
        CallUuid(UID),
        Audio(b"\x01\x00" * 160, 8000),
        Dtmf("7"),
        Hangup(),
    ]
    assert conn.call_uuid == UID and conn.rate_hz == 8000


def test_frames_split_at_every_byte_boundary() -> None:
    data = encode_frame(0x01, UID.bytes) + encode_frame(0x10, bytes(320)) + encode_frame(0x03, b"#")
    conn = AudioSocketConnection()
    got: list[object] = []
    for i in range(len(data)):
        got += events(conn, data[i : i + 1])
    assert got == [CallUuid(UID), Audio(bytes(320), 8000), Dtmf("#")]


@pytest.mark.parametrize(
    ("kind", "rate_hz"),
    [
        (0x10, 8000),
        (0x11, 12000),
        (0x12, 16000),
        (0x13, 24000),
        (0x14, 32000),
        (0x15, 44100),
        (0x16, 48000),
        (0x17, 96000),
        (0x18, 192000),
    ],
)
def test_current_numbering_rates(kind: int, rate_hz: int) -> None:
    conn = started()
    samples = rate_hz // 50
    assert events(conn, encode_frame(kind, bytes(samples * 2))) == [
        Audio(bytes(samples * 2), rate_hz)
    ]
    assert audio_kind(rate_hz) == kind


def test_draft_numbering_reads_0x11_as_slin16() -> None:
    conn = started(Numbering.DRAFT)
    assert events(conn, encode_frame(0x11, bytes(640))) == [Audio(bytes(640), 16000)]
    assert audio_kind(16000, Numbering.DRAFT) == 0x11
    with pytest.raises(AudioSocketError) as err:
        events(conn, encode_frame(0x12, bytes(640)))
    assert err.value.reason == "unknown_kind"


def test_error_frame_flags() -> None:
    conn = started()
    assert events(conn, encode_frame(0xFF, b"\x03")) == [
        PeerError(ErrorFlag.HANGUP | ErrorFlag.FORWARDING)
    ]


def test_eof_between_frames_is_a_hangup() -> None:
    conn = started()
    assert events(conn, b"") == [Hangup(by_eof=True)]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (encode_frame(0x02, b"x"), "unknown_kind"),
        (encode_frame(0x42, b""), "unknown_kind"),
        (encode_frame(0x10, b""), "zero_length"),
        (encode_frame(0x10, bytes(1602)), "oversized"),
        (encode_frame(0x10, bytes(321)), "odd_length"),
        (encode_frame(0x03, b""), "bad_length"),
        (encode_frame(0x03, b"12"), "bad_length"),
        (encode_frame(0x03, b"x"), "bad_dtmf"),
        (encode_frame(0x00, b"junk"), "bad_length"),
        (encode_frame(0x01, UID.bytes), "duplicate_uuid"),
        (encode_frame(0x10, bytes(320)) + encode_frame(0x12, bytes(640)), "rate_changed"),
    ],
)
def test_malformed_frames_after_uuid(data: bytes, reason: str) -> None:
    conn = started()
    with pytest.raises(AudioSocketError) as err:
        events(conn, data)
    assert err.value.reason == reason


@pytest.mark.parametrize("data", [encode_frame(0x10, bytes(320)), encode_frame(0x03, b"1")])
def test_media_before_uuid(data: bytes) -> None:
    with pytest.raises(AudioSocketError) as err:
        events(AudioSocketConnection(), data)
    assert err.value.reason == "before_uuid"


def test_uuid_of_wrong_length() -> None:
    with pytest.raises(AudioSocketError) as err:
        events(AudioSocketConnection(), encode_frame(0x01, b"short"))
    assert err.value.reason == "bad_length"


@pytest.mark.parametrize("cut", [1, 2, 3, 100])
def test_truncated_frame_at_eof(cut: int) -> None:
    conn = started()
    conn.receive_data(encode_frame(0x10, bytes(320))[:cut])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    with pytest.raises(AudioSocketError) as err:
        conn.next_event()
    assert err.value.reason == "truncated"


def test_oversized_is_rejected_from_the_header_alone() -> None:
    """A 64 KiB length must fail before we buffer 64 KiB."""
    conn = started()
    conn.receive_data(b"\x10\xff\xff")
    with pytest.raises(AudioSocketError) as err:
        conn.next_event()
    assert err.value.reason == "oversized"


def test_send_audio_cuts_20ms_frames() -> None:
    conn = AudioSocketConnection()
    out = conn.send_audio(bytes(320 * 2 + 100), 8000)
    reader = AudioSocketConnection()
    reader.receive_data(encode_frame(0x01, UID.bytes) + out)
    lengths = []
    while (ev := reader.next_event()) is not NEED_DATA:
        if isinstance(ev, Audio):
            lengths.append(len(ev.pcm16))
    assert lengths == [320, 320, 100]
    assert conn.send_audio(bytes(640), 16000)[:3] == b"\x12\x02\x80"
    assert AudioSocketConnection(Numbering.DRAFT).send_audio(bytes(640), 16000)[0] == 0x11
    assert conn.send_hangup() == b"\x00\x00\x00"


def test_send_audio_refuses_odd_bytes_and_unknown_rates() -> None:
    conn = AudioSocketConnection()
    with pytest.raises(ValueError):
        conn.send_audio(b"\x00", 8000)
    with pytest.raises(ValueError):
        conn.send_audio(bytes(20), 11025)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 64), max_size=20))
def test_random_bytes_only_raise_protocol_errors(data: bytes, cuts: list[int]) -> None:
    conn = AudioSocketConnection()
    pos = 0
    try:
        for size in [*cuts, len(data)]:
            chunk = data[pos : pos + size]
            pos += size
            if not chunk:
                continue
            for _ in events(conn, chunk):
                pass
        conn.receive_data(b"")
        while not isinstance(conn.next_event(), (Hangup, type(NEED_DATA))):
            pass
    except AudioSocketError as exc:
        assert exc.reason in {
            "unknown_kind",
            "zero_length",
            "oversized",
            "odd_length",
            "bad_length",
            "bad_dtmf",
            "duplicate_uuid",
            "before_uuid",
            "truncated",
            "rate_changed",
        }
    except RuntimeError as exc:  # using a finished connection is a caller bug, not a parse error
        assert "finished" in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["audio", "dtmf"]), max_size=30), st.data())
def test_valid_streams_round_trip(kinds: list[str], data: st.DataObject) -> None:
    wire = encode_frame(0x01, UID.bytes)
    expected: list[object] = [CallUuid(UID)]
    for k in kinds:
        if k == "audio":
            pcm = data.draw(st.binary(min_size=2, max_size=320).filter(lambda b: len(b) % 2 == 0))
            wire += encode_frame(0x10, pcm)
            expected.append(Audio(pcm, 8000))
        else:
            digit = data.draw(st.sampled_from("0123456789*#ABCD"))
            wire += encode_frame(0x03, digit.encode())
            expected.append(Dtmf(digit))
    assert events(AudioSocketConnection(), wire) == expected
