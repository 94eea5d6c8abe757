"""The playout buffer: bounded in milliseconds, whole frames, flush, marks."""

from __future__ import annotations

from media.playout import PlayoutBuffer


def test_frames_come_out_whole_and_in_order() -> None:
    buf = PlayoutBuffer(8000, max_ms=1000)
    buf.push(bytes(range(256)) * 2 + b"\x01\x02" * 32)  # 576 bytes = 1.8 frames
    first = buf.pop_frame()
    assert first == (bytes(range(256)) * 2)[:320]
    assert buf.pop_frame() is None  # a 256-byte tail waits for more
    tail = buf.pop_frame(pad=True)
    assert tail is not None and len(tail) == 320 and tail.endswith(bytes(64))
    assert buf.pop_frame(pad=True) is None


def test_bound_drops_and_counts_new_audio() -> None:
    buf = PlayoutBuffer(8000, max_ms=100)
    assert buf.push(bytes(1600)) == 0
    dropped = buf.push(bytes(800))
    assert dropped == 50.0 and buf.dropped_ms == 50.0
    assert buf.buffered_ms == 100.0


def test_flush_drops_everything_and_returns_marks() -> None:
    buf = PlayoutBuffer(8000, max_ms=10_000)
    buf.push(bytes(3200))
    buf.add_mark("m1")
    buf.push(bytes(3200))
    buf.add_mark("m2")
    dropped, marks = buf.flush()
    assert dropped == 400.0 and marks == ["m1", "m2"]
    assert len(buf) == 0 and buf.pop_frame(pad=True) is None
    buf.push(bytes(320))
    buf.add_mark("m3")
    assert buf.pop_frame() is not None
    assert buf.passed_marks() == ["m3"]


def test_marks_pass_when_their_audio_has_been_popped() -> None:
    buf = PlayoutBuffer(8000, max_ms=10_000)
    buf.push(bytes(640))
    buf.add_mark("after-two-frames")
    buf.pop_frame()
    assert buf.passed_marks() == []
    buf.pop_frame()
    assert buf.passed_marks() == ["after-two-frames"]
    assert buf.passed_marks() == []
