"""The multiplexed agent link's framing (proto/mux.py): records in, records out, and what a bad
record does to its batch and to the other calls' records."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from proto import mux
from proto.codec import encode
from proto.messages import Audio, Hangup


def test_records_of_many_calls_come_back_in_order() -> None:
    audio = encode(Audio(b"\x01\x02" * 320, 16000))
    batch = b"".join(
        (
            mux.frame_record(1, audio),
            mux.frame_record(7, encode(Hangup("bye"))),
            mux.close_record(1, 1000, "done"),
        )
    )
    assert mux.parse_batch(batch) == [
        mux.FrameRecord(1, audio),
        mux.FrameRecord(7, encode(Hangup("bye"))),
        mux.CloseRecord(1, 1000, "done"),
    ]


@given(st.lists(st.tuples(st.integers(1, 2**32 - 1), st.binary(max_size=300)), max_size=20))
def test_any_frames_round_trip(frames: list[tuple[int, bytes]]) -> None:
    batch = b"".join(mux.frame_record(ch, payload) for ch, payload in frames)
    assert mux.parse_batch(batch) == [mux.FrameRecord(ch, payload) for ch, payload in frames]


@given(st.binary(max_size=200))
def test_garbage_never_raises(data: bytes) -> None:
    for record in mux.parse_batch(data):
        assert isinstance(record, mux.FrameRecord | mux.CloseRecord | mux.BadRecord)


def test_a_cut_record_ends_its_batch_and_keeps_the_records_before() -> None:
    first = mux.frame_record(3, b"abc")
    cut = mux.frame_record(4, b"defghij")[:-2]
    assert mux.parse_batch(first + cut) == [
        mux.FrameRecord(3, b"abc"),
        mux.BadRecord(4, "cut record (5 of 7 bytes)"),
    ]
    assert mux.parse_batch(first + cut[:5]) == [
        mux.FrameRecord(3, b"abc"),
        mux.BadRecord(0, "cut record header (5 of 9 bytes)"),
    ]


def test_an_oversized_record_is_refused_for_its_call() -> None:
    head = mux.HEADER.pack(9, mux.KIND_FRAME, mux.MAX_RECORD_PAYLOAD_BYTES + 1)
    (bad,) = mux.parse_batch(mux.frame_record(2, b"x") + head)[1:]
    assert bad == mux.BadRecord(
        9, f"record of {mux.MAX_RECORD_PAYLOAD_BYTES + 1} bytes exceeds the limit"
    )


def test_an_oversized_frame_cannot_be_sent() -> None:
    try:
        mux.frame_record(5, bytes(mux.MAX_RECORD_PAYLOAD_BYTES + 1))
    except mux.MuxError as exc:
        assert exc.channel == 5 and "exceeds" in str(exc)
    else:
        raise AssertionError("an oversized frame was framed")


def test_an_oversized_batch_is_refused_whole() -> None:
    (bad,) = mux.parse_batch(bytes(mux.MAX_BATCH_BYTES + 1))
    assert isinstance(bad, mux.BadRecord)
    assert bad.channel == 0 and "exceeds" in bad.reason


def test_an_unknown_kind_is_skipped_and_the_next_record_stands() -> None:
    odd = mux.HEADER.pack(6, 99, 3) + b"zzz"
    batch = odd + mux.frame_record(8, b"ok") + mux.HEADER.pack(6, mux.KIND_CLOSE, 1) + b"\x03"
    assert mux.parse_batch(batch) == [
        mux.BadRecord(6, "unknown record kind 99", fatal=False),
        mux.FrameRecord(8, b"ok"),
        mux.BadRecord(6, "close record without a code"),
    ]


def test_channel_zero_is_no_call() -> None:
    assert mux.parse_batch(mux.HEADER.pack(0, mux.KIND_FRAME, 0)) == [
        mux.BadRecord(0, "channel 0 is not a call")
    ]


def test_close_reason_is_bounded_and_carries_its_code() -> None:
    record = mux.close_record(2, 1011, "é" * 200)
    (parsed,) = mux.parse_batch(record)
    assert isinstance(parsed, mux.CloseRecord) and parsed.code == 1011
    assert len(parsed.reason.encode()) <= mux.MAX_REASON_BYTES


def test_the_batcher_cuts_messages_before_the_limit() -> None:
    batcher = mux.Batcher()
    big = mux.frame_record(1, bytes(mux.MAX_RECORD_PAYLOAD_BYTES))
    small = mux.frame_record(2, b"s")
    for record in (big, big, small, big):
        batcher.add(record)
    messages = batcher.take()
    assert [len(m) for m in messages] == [len(big) * 2 + len(small), len(big)]
    assert all(len(m) <= mux.MAX_BATCH_BYTES for m in messages)
    assert not batcher and batcher.take() == []
    assert [r.channel for m in messages for r in mux.parse_batch(m)] == [1, 1, 2, 1]
    assert mux.MuxError(0, "cut").reason == "cut"


def test_the_channel_table_tells_new_calls_from_finished_ones() -> None:
    table = mux.ChannelTable()
    assert table.classify(1) == "new"
    table.opened(1)
    assert table.classify(1) == "open"
    table.seen(2)  # refused: no call_start
    assert table.classify(2) == "stray"
    table.closed(1)
    assert table.classify(1) == "stray"  # a late record of a call that is over opens nothing
    assert table.classify(3) == "new"


def test_header_layout_is_big_endian() -> None:
    assert mux.frame_record(0x01020304, b"\xff") == struct.pack("!IBI", 0x01020304, 1, 1) + b"\xff"
