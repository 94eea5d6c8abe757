"""Jitter buffer on synthetic streams: order, concealment without gaps, adaptation, bounds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.rtp.jitterbuffer import FrameStatus, JitterBuffer, PlayoutFrame

STEP = 160  # 20 ms at 8 kHz


def _run(
    buffer: JitterBuffer, arrivals: list[tuple[float, int]], ticks: int, first_tick: int = 0
) -> list[PlayoutFrame | None]:
    """Deliver (arrival_ms, frame_index) packets in time order and pop every 20 ms."""
    pending = sorted(arrivals)
    out: list[PlayoutFrame | None] = []
    for tick in range(first_tick, ticks):
        now = tick * 20.0
        while pending and pending[0][0] <= now:
            arrival, index = pending.pop(0)
            buffer.put(10_000 + index * STEP, 0, index.to_bytes(2, "big"), arrival)
        out.append(buffer.pop(now))
    return out


def _played(frames: list[PlayoutFrame | None]) -> list[int]:
    return [
        int.from_bytes(f.entry.payload, "big")
        for f in frames
        if f is not None and f.status is FrameStatus.PLAYED and f.entry is not None
    ]


def test_steady_stream_plays_in_order_after_initial_depth() -> None:
    buffer = JitterBuffer()
    frames = _run(buffer, [(n * 20.0, n) for n in range(50)], ticks=60)
    assert frames[0] is None  # buffering
    started = next(i for i, f in enumerate(frames) if f is not None)
    assert started * 20 == buffer.min_depth_ms
    assert _played(frames) == list(range(50))
    assert buffer.stats.lost == 0 and buffer.stats.holds == 0 and buffer.stats.skips == 0
    assert buffer.target_ms == buffer.min_depth_ms


def test_reordered_packets_come_out_in_order() -> None:
    arrivals = [(n * 20.0, n) for n in range(40)]
    for i in range(2, 38, 5):  # swap neighbours: n+1 arrives 10 ms before n
        arrivals[i], arrivals[i + 1] = (arrivals[i][0] + 10, i), (arrivals[i][0], i + 1)
    buffer = JitterBuffer()
    frames = _run(buffer, arrivals, ticks=50)
    assert _played(frames) == list(range(40))
    assert buffer.stats.lost == 0


def test_lost_packets_are_concealed_without_gaps() -> None:
    lost = {5, 6, 20}
    buffer = JitterBuffer()
    frames = _run(buffer, [(n * 20.0, n) for n in range(40) if n not in lost], ticks=45)
    started = next(i for i, f in enumerate(frames) if f is not None)
    assert all(f is not None for f in frames[started:])  # one frame per tick, always
    statuses = [f.status for f in frames[started : started + 40] if f is not None]
    assert [i for i, s in enumerate(statuses) if s is FrameStatus.LOST] == sorted(lost)
    assert _played(frames) == [n for n in range(40) if n not in lost]
    assert buffer.stats.lost == 3


def test_depth_grows_with_jitter_and_shrinks_after() -> None:
    rng = random.Random(7)
    buffer = JitterBuffer(window_packets=50)
    calm = [(n * 20.0, n) for n in range(100)]
    jittery = [(n * 20.0 + rng.uniform(0, 90), n) for n in range(100, 250)]
    calm_again = [(n * 20.0, n) for n in range(250, 400)]
    frames = _run(buffer, calm, ticks=100)
    assert buffer.target_ms == 40
    frames += _run(buffer, jittery, 250, first_tick=100)
    grown = buffer.target_ms
    assert 80 <= grown <= 120
    late_in_jitter = buffer.stats.late
    frames += _run(buffer, calm_again, 420, first_tick=250)
    assert buffer.target_ms == 40
    assert buffer.stats.holds > 0 and buffer.stats.skips > 0  # delay was grown, then shrunk
    assert late_in_jitter <= 10  # adapting kept most jittered packets in time
    played = _played(frames)
    assert played == sorted(played)  # order kept throughout


def test_late_and_duplicate_packets_are_dropped_and_counted() -> None:
    buffer = JitterBuffer()
    for n in range(5):
        assert buffer.put(n * STEP, 0, b"x", n * 20.0)
    assert not buffer.put(2 * STEP, 0, b"x", 90.0)
    assert buffer.stats.duplicates == 1
    for tick in range(3, 8):
        buffer.pop(tick * 20.0)
    assert not buffer.put(1 * STEP, 0, b"late", 170.0)
    assert buffer.stats.late == 1


def test_far_jump_on_empty_buffer_resyncs_and_overflow_is_bounded() -> None:
    buffer = JitterBuffer(capacity_ms=1000)
    buffer.put(0, 0, b"a", 0.0)
    assert not buffer.put(100 * STEP, 0, b"far", 1.0)  # 2 s ahead while holding audio
    assert buffer.stats.overflow == 1
    assert buffer.pop(40.0) is not None and buffer.pop(60.0) is not None
    assert buffer.put(10_000 * STEP, 0, b"new", 80.0)  # empty now: the sender jumped
    assert buffer.stats.resyncs == 1
    assert buffer.depth_ms == 20


def test_silence_slots_are_not_losses() -> None:
    buffer = JitterBuffer()
    buffer.put(0, 0, b"a", 0.0)
    buffer.put_silence(STEP, 20.0)
    buffer.put(2 * STEP, 0, b"b", 40.0)
    frames = [buffer.pop(t) for t in (40.0, 60.0, 80.0)]
    assert [f.status for f in frames if f is not None] == [FrameStatus.PLAYED] * 3
    assert buffer.stats.lost == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"frame_ms": 0}, {"min_depth_ms": 10}, {"max_depth_ms": 20}, {"capacity_ms": 300}],
)
def test_bad_bounds_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        JitterBuffer(**kwargs)


def test_gap_in_timestamps_without_gap_in_sequence_is_silence_not_loss() -> None:
    buffer = JitterBuffer()
    buffer.put(0, 0, b"a", 0.0, seq=10)
    buffer.put(STEP, 0, b"b", 20.0, seq=11)
    buffer.put(5 * STEP, 0, b"c", 100.0, seq=12)  # talkspurt after 60 ms of DTX
    buffer.put(7 * STEP, 0, b"d", 140.0, seq=14)  # seq 13 (slot 6) was lost
    statuses = [f.status for t in range(2, 10) if (f := buffer.pop(t * 20.0)) is not None]
    assert statuses[:8] == [
        FrameStatus.PLAYED,
        FrameStatus.PLAYED,
        FrameStatus.UNDERRUN,
        FrameStatus.UNDERRUN,
        FrameStatus.UNDERRUN,
        FrameStatus.PLAYED,
        FrameStatus.LOST,
        FrameStatus.PLAYED,
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 120), min_size=30, max_size=120),
    st.sets(st.integers(0, 119), max_size=20),
)
def test_any_delays_and_losses_keep_order_and_one_frame_per_tick(
    delays_ms: list[float], lost: set[int]
) -> None:
    arrivals = [(n * 20.0 + d, n) for n, d in enumerate(delays_ms) if n not in lost]
    buffer = JitterBuffer()
    frames = _run(buffer, arrivals, ticks=len(delays_ms) + 40)
    played = _played(frames)
    assert played == sorted(played) and len(set(played)) == len(played)
    started = next((i for i, f in enumerate(frames) if f is not None), len(frames))
    assert all(f is not None for f in frames[started:])
    assert set(played) <= {n for _, n in arrivals}
    stats = buffer.stats
    assert stats.played == len(played)
    assert stats.played + stats.late + stats.skips >= len(arrivals) - 1  # nothing vanishes
    assert buffer.min_depth_ms <= buffer.target_ms <= buffer.max_depth_ms


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.floats(0, 500)), max_size=300))
def test_the_kept_window_minimum_is_the_true_one(packets: list[tuple[int, float]]) -> None:
    """The playout decision reads a cached min of the arrival window; it must never drift."""
    buffer = JitterBuffer(window_packets=20)
    for i, (frame, jitter_ms) in enumerate(packets):
        buffer.put(frame * 160, 0, b"\xff" * 160, i * 20 + jitter_ms)
        window = buffer._window
        assert buffer._window_min == (min(window) if window else None)
