"""Jitter buffer on synthetic streams: order, concealment without gaps, adaptation, bounds,
and packets of any duration (10-200 ms) cut into the core's 20 ms frames."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.rtp.jitterbuffer import FrameStatus, JitterBuffer, PlayoutFrame

STEP = 160  # 20 ms at 8 kHz


def _payload(index: int, units: int = STEP) -> bytes:
    """``units`` bytes (one per timestamp unit, as G.711) that say which frame they are."""
    return (index.to_bytes(2, "big") * units)[:units]


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
            buffer.put(10_000 + index * STEP, 0, _payload(index), arrival)
        out.append(buffer.pop(now))
    return out


def _played(frames: list[PlayoutFrame | None]) -> list[int]:
    return [
        int.from_bytes(f.pieces[0].payload[:2], "big")
        for f in frames
        if f is not None and f.status is FrameStatus.PLAYED
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
        assert buffer.put(n * STEP, 0, _payload(n), n * 20.0)
    assert not buffer.put(2 * STEP, 0, _payload(2), 90.0)
    assert buffer.stats.duplicates == 1
    for tick in range(3, 8):
        buffer.pop(tick * 20.0)
    assert not buffer.put(1 * STEP, 0, _payload(1), 170.0)
    assert buffer.stats.late == 1


def test_far_jump_on_empty_buffer_resyncs_and_overflow_is_bounded() -> None:
    buffer = JitterBuffer(capacity_ms=1000)
    buffer.put(0, 0, _payload(0), 0.0)
    assert not buffer.put(100 * STEP, 0, _payload(1), 1.0)  # 2 s ahead while holding audio
    assert buffer.stats.overflow == 1
    assert buffer.pop(40.0) is not None and buffer.pop(60.0) is not None
    assert buffer.put(10_000 * STEP, 0, _payload(2), 80.0)  # empty now: the sender jumped
    assert buffer.stats.resyncs == 1
    assert buffer.depth_ms == 20


def test_silence_slots_are_not_losses() -> None:
    buffer = JitterBuffer()
    buffer.put(0, 0, _payload(0), 0.0)
    buffer.put_silence(STEP, STEP, 20.0)
    buffer.put(2 * STEP, 0, _payload(2), 40.0)
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
    buffer.put(0, 0, _payload(0), 0.0, seq=10)
    buffer.put(STEP, 0, _payload(1), 20.0, seq=11)
    buffer.put(5 * STEP, 0, _payload(5), 100.0, seq=12)  # talkspurt after 60 ms of DTX
    buffer.put(7 * STEP, 0, _payload(7), 140.0, seq=14)  # seq 13 (slot 6) was lost
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


# Packets of any duration ---------------------------------------------------------------------


def _stream(units: int) -> bytes:
    """One byte per timestamp unit (as G.711), never the same twice in a row."""
    return bytes((u * 7 + u // 251) % 251 for u in range(units))


def _cut(stream: bytes, durations: list[int], first_ts: int = 5000) -> list[tuple[int, bytes]]:
    """The stream as packets of the given durations (timestamp units): (timestamp, payload)."""
    packets, start = [], 0
    for units in durations:
        if start >= len(stream):
            break
        packets.append((first_ts + start, stream[start : start + units]))
        start += units
    return packets


def _frame_index(frame: PlayoutFrame, first_ts: int = 5000) -> int | None:
    """Which 20 ms of the stream a fully covered slot holds; None for anything else."""
    if frame.status is not FrameStatus.PLAYED or sum(p.units for p in frame.pieces) != STEP:
        return None
    assert frame.timestamp is not None
    start = frame.timestamp - first_ts
    return start // STEP if start % STEP == 0 else None


def _check_in_place(frame: PlayoutFrame, stream: bytes, first_ts: int = 5000) -> None:
    """Every piece of a played slot holds the stream's bytes for its own timestamps."""
    assert frame.timestamp is not None
    for piece in frame.pieces:
        start = frame.timestamp - first_ts + piece.offset
        assert piece.payload == stream[start : start + piece.units]


def _play(buffer: JitterBuffer, packets: list[tuple[int, bytes]], arrivals_ms: list[float],
          ticks: int) -> list[PlayoutFrame]:  # fmt: skip
    pending = sorted(zip(arrivals_ms, range(len(packets)), strict=True))
    out = []
    for tick in range(ticks):
        now = tick * 20.0
        while pending and pending[0][0] <= now:
            arrival, i = pending.pop(0)
            buffer.put(packets[i][0], 0, packets[i][1], arrival)
        frame = buffer.pop(now)
        if frame is not None:
            out.append(frame)
    return out


def _assembled(frame: PlayoutFrame) -> bytes:
    data = bytearray(STEP)
    for piece in frame.pieces:
        data[piece.offset : piece.offset + piece.units] = piece.payload
    return bytes(data)


def test_thirty_ms_packets_on_a_twenty_ms_call_play_every_frame_without_drift() -> None:
    """sipp's stock uac_pcap case: 30 ms packets every 30 ms after ptime 20 was agreed."""
    stream = _stream(236 * 240)  # its g711a.pcap: 236 packets of 30 ms
    packets = _cut(stream, [240] * 236)
    arrivals = [(n + 1) * 30.0 + 3 for n in range(236)]  # sent when captured, 3 ms on the way
    buffer = JitterBuffer()
    frames = _play(buffer, packets, arrivals, ticks=400)
    played = [f for f in frames if f.status is FrameStatus.PLAYED]
    assert len(played) == 354  # 7.08 s in 20 ms frames, none missing
    assert b"".join(_assembled(f) for f in played) == stream  # nothing added, nothing moved
    first = frames.index(played[0])
    assert all(f.status is FrameStatus.PLAYED for f in frames[first : first + 354])
    assert buffer.stats.lost == buffer.stats.holds == buffer.stats.partial == 0


@settings(max_examples=80, deadline=None)
@given(st.integers(80, 480), st.integers(10, 80), st.floats(0, 15))
def test_packets_of_any_one_duration_play_the_stream_whole_and_on_time(
    units: int, count: int, delay_ms: float
) -> None:
    """A sender's packets of 10-60 ms, odd lengths too (25.5 ms...), whatever was agreed, each
    sent once its audio was captured: every frame plays whole and in place, one per tick, with
    no hold, skip or hole: no drift."""
    stream = _stream(units * count // STEP * STEP)
    packets = _cut(stream, [units] * count)
    arrivals = [(ts - 5000 + len(p)) / 8 + delay_ms for ts, p in packets]
    buffer = JitterBuffer()
    frames = _play(buffer, packets, arrivals, ticks=len(stream) // STEP + 40)
    played = [f for f in frames if f.status is FrameStatus.PLAYED]
    assert [_frame_index(f) for f in played] == list(range(len(stream) // STEP))
    first = frames.index(played[0])
    assert frames[first : first + len(played)] == played  # back to back: no gap, no drift
    stats = buffer.stats
    assert stats.lost == stats.late == stats.partial == stats.holds == stats.skips == 0
    for f in played:
        _check_in_place(f, stream)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(80, 480), min_size=20, max_size=80), st.floats(0, 15))
def test_packets_of_mixed_durations_keep_every_byte_in_place(
    durations: list[int], delay_ms: float
) -> None:
    """Every packet a different length (no real sender does this): the buffer adapts its depth
    as longer packets come (a hold to grow, a skip to shrink, a packet longer than any before
    it may come too late for its first slot), but every byte it plays is in place and in
    order, and every frame is played whole, skipped or counted late."""
    stream = _stream(sum(durations) // STEP * STEP)
    packets = _cut(stream, durations)
    arrivals = [(ts - 5000 + len(p)) / 8 + delay_ms for ts, p in packets]
    buffer = JitterBuffer()
    frames = _play(buffer, packets, arrivals, ticks=len(stream) // STEP + 40)
    stats = buffer.stats
    played = [f for f in frames if f.status is FrameStatus.PLAYED]
    assert [f.timestamp for f in played] == sorted({f.timestamp for f in played})
    for f in played:
        _check_in_place(f, stream)
    whole = [i for f in played if (i := _frame_index(f)) is not None]
    at_most_per_late_packet = 480 // STEP + 1  # slots one 60 ms packet can touch
    missing = len(stream) // STEP - len(whole) - stats.skips
    assert 0 <= missing <= stats.late * at_most_per_late_packet
    assert stats.lost == 0  # none was lost on the way, so no slot counts as lost


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(80, 480), st.floats(0, 120)), min_size=20, max_size=80),
    st.sets(st.integers(0, 79), max_size=10),
)
def test_mixed_durations_with_jitter_and_loss_keep_every_played_byte_in_place(
    packets_spec: list[tuple[int, float]], lost: set[int]
) -> None:
    stream = _stream(sum(units for units, _ in packets_spec))
    packets = _cut(stream, [units for units, _ in packets_spec])
    arrivals = [
        (ts - 5000 + len(p)) / 8 + jitter
        for (ts, p), (_, jitter) in zip(packets, packets_spec, strict=True)
    ]
    kept = [i for i in range(len(packets)) if i not in lost]
    buffer = JitterBuffer()
    frames = _play(buffer, [packets[i] for i in kept], [arrivals[i] for i in kept],
                   ticks=len(stream) // STEP + 60)  # fmt: skip
    played = [f.timestamp for f in frames if f.status is FrameStatus.PLAYED]
    assert played == sorted(played) and len(set(played)) == len(played)
    for f in frames:
        if f.status is FrameStatus.PLAYED:
            _check_in_place(f, stream)
    started = next((i for i, f in enumerate(frames) if f is not None), len(frames))
    assert all(f is not None for f in frames[started:])


def test_a_straddling_packet_fills_the_rest_of_a_slot_and_overlaps_are_duplicates() -> None:
    buffer = JitterBuffer()
    stream = _stream(480)
    assert buffer.put(0, 0, stream[:240], 30.0)  # slot 0 whole, slot 1 up to 10 ms
    assert not buffer.put(0, 0, stream[:240], 31.0)  # a retransmission: all of it overlaps
    assert buffer.stats.duplicates == 1
    assert buffer.put(240, 0, stream[240:480], 60.0)  # the rest of slot 1, slot 2 whole
    frames = [buffer.pop(t) for t in (80.0, 100.0, 120.0)]
    assert [_frame_index(f, 0) for f in frames if f is not None] == [0, 1, 2]
    assert [len(f.pieces) for f in frames if f is not None] == [1, 2, 1]


def test_a_slot_half_lost_plays_its_half_and_counts_it() -> None:
    buffer = JitterBuffer()
    stream = _stream(960)
    for start in (0, 480, 720):  # the 30 ms packet at 240 never comes
        buffer.put(start, 0, stream[start : start + 240], start / 8 + 30)
    frames = [f for t in range(3, 12) if (f := buffer.pop(t * 20.0)) is not None]
    played, lost = FrameStatus.PLAYED, FrameStatus.LOST
    assert [f.status for f in frames[:6]] == [played, played, lost, played, played, played]
    assert buffer.stats.partial == 1  # slot 1 had its first half only
    assert _assembled(frames[1]) == stream[160:240] + bytes(80)


def test_a_slot_waits_for_the_packet_bringing_its_rest() -> None:
    """Its first part is here, nothing after it: the rest is on its way (a 60 ms packet after
    shorter ones), so the buffer holds a frame rather than play a hole."""
    buffer = JitterBuffer()
    stream = _stream(640)
    buffer.put(0, 0, stream[:240], 30.0)
    first = buffer.pop(80.0)
    assert first is not None and first.status is FrameStatus.PLAYED
    held = buffer.pop(100.0)  # slot 1 has 10 ms of 20 and nothing later has come
    assert held is not None and held.status is FrameStatus.HOLD
    buffer.put(240, 0, stream[240:640], 110.0)
    rest = [buffer.pop(t) for t in (120.0, 140.0, 160.0)]
    assert [_frame_index(f, 0) for f in rest if f is not None] == [1, 2, 3]
    assert buffer.stats.partial == 0
