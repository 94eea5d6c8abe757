"""The playout buffer: bounded in milliseconds, whole frames, flush, marks."""

from __future__ import annotations

import numpy as np

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


def frames_of(value: int, n: int) -> bytes:
    return np.full(160 * n, value, dtype="<i2").tobytes()


def test_an_overlay_plays_in_place_of_the_audio_under_it() -> None:
    """Tones replace the frames at the current position, and the call's audio goes on from where
    it would have been: nothing is pushed back (what appending the tones did)."""
    buf = PlayoutBuffer(8000, max_ms=10_000)
    buf.push(b"".join(frames_of(k, 1) for k in range(1, 7)))  # frames 1..6
    buf.add_mark("after-6")
    assert buf.pop_frame() == frames_of(1, 1)
    assert buf.overlay(frames_of(-9, 2) + frames_of(-9, 1)[:100]) == 0  # 2.3 frames of tones
    out = [buf.pop_frame() for _ in range(5)]
    assert out[:2] == [frames_of(-9, 1)] * 2
    assert out[2] == frames_of(-9, 1)[:100] + bytes(220)  # the tones' tail, padded
    assert out[3:] == [frames_of(5, 1), frames_of(6, 1)]  # frames 2..4 were under the tones
    assert buf.passed_marks() == ["after-6"]
    assert buf.pop_frame(pad=True) is None and not buf.pending()


def test_an_overlay_plays_over_silence_and_survives_a_barge_in() -> None:
    buf = PlayoutBuffer(8000, max_ms=10_000)
    assert not buf.pending()
    buf.overlay(frames_of(-9, 2))
    buf.push(frames_of(3, 1)[:200])  # a short tail of agent audio under the tones
    assert buf.pending() and len(buf) == 200
    buf.flush()  # barge-in: the agent's speech goes, the key presses it asked for do not
    assert buf.pop_frame() == frames_of(-9, 1)
    assert buf.pop_frame() == frames_of(-9, 1)
    assert buf.pop_frame(pad=True) is None


def test_an_overlay_is_bounded() -> None:
    buf = PlayoutBuffer(8000, max_ms=100)
    assert buf.overlay(frames_of(-9, 7)) == 40.0
    assert sum(buf.pop_frame() is not None for _ in range(7)) == 5


def test_audio_due_under_tones_that_went_out_first_is_dropped_when_it_comes() -> None:
    """A live stream's frame arrives just after its slot: the tone frame went out with nothing
    under it, so the frame it replaced is dropped when it comes, and the next one plays on time
    (kept, it would be one frame of latency for the rest of the call)."""
    buf = PlayoutBuffer(8000, max_ms=10_000)
    buf.overlay(frames_of(-9, 2))
    assert buf.pop_frame() == frames_of(-9, 1)
    buf.push(frames_of(1, 1))
    assert buf.pop_frame() == frames_of(-9, 1)
    assert buf.owes()
    buf.push(frames_of(2, 1))  # due under the second tone frame: dropped
    buf.push(frames_of(3, 1))
    assert not buf.owes() and buf.pop_frame() == frames_of(3, 1)


def test_a_debt_is_bounded_and_can_be_forgiven() -> None:
    buf = PlayoutBuffer(8000, max_ms=10_000)
    buf.overlay(frames_of(-9, 10))  # 200 ms of tones on a silent call
    while buf.pop_frame() is not None:
        pass
    buf.push(frames_of(4, 6) + frames_of(5, 1))
    assert [buf.pop_frame() for _ in range(2)] == [frames_of(4, 1), frames_of(5, 1)]  # 100 ms owed
    buf.overlay(frames_of(-9, 1))
    buf.pop_frame()
    buf.forgive()  # the pacer: no audio came for a while after the tones
    buf.push(frames_of(6, 1))
    assert buf.pop_frame() == frames_of(6, 1)
