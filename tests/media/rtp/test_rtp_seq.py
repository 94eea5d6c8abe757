"""Sequence and timestamp unwrapping, RFC 3550 A.1 source validation."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from media.rtp.seq import (
    MAX_DROPOUT,
    SEQ_MOD,
    SequenceTracker,
    SeqVerdict,
    TimestampUnwrapper,
)


def test_sequence_wraps_into_extended_numbers() -> None:
    tracker = SequenceTracker()
    extended = []
    for n in range(65530, 65530 + 12):
        tracker.update(n % SEQ_MOD)
        extended.append(tracker.highest_extended)
    assert extended == list(range(65530, 65542))
    assert tracker.cycles == SEQ_MOD
    assert tracker.expected == 12 and tracker.received == 12


def test_probation_then_accepted() -> None:
    tracker = SequenceTracker()
    assert tracker.update(100) is SeqVerdict.PROBATION
    assert tracker.update(101) is SeqVerdict.ACCEPTED
    assert tracker.update(102) is SeqVerdict.ACCEPTED


def test_probation_restarts_on_non_sequential_packet() -> None:
    tracker = SequenceTracker()
    tracker.update(100)
    assert tracker.update(500) is SeqVerdict.PROBATION
    assert tracker.base_seq == 500
    assert tracker.update(501) is SeqVerdict.ACCEPTED


def test_reordered_packet_extends_behind_highest_across_wrap() -> None:
    tracker = SequenceTracker()
    for seq in (65534, 65535, 0, 1):
        tracker.update(seq)
    assert tracker.extend(65535) == 65535  # late packet from before the wrap
    assert tracker.extend(2) == SEQ_MOD + 2
    assert tracker.update(65535) is SeqVerdict.DUPLICATE_OR_LATE
    assert tracker.received == 5 and tracker.highest_extended == SEQ_MOD + 1


def test_late_packet_is_flagged_and_counted() -> None:
    tracker = SequenceTracker()
    for seq in range(10, 20):
        tracker.update(seq)
    assert tracker.update(15 - 10) is SeqVerdict.DUPLICATE_OR_LATE
    assert tracker.received == 11


def test_big_jump_needs_confirmation_then_restarts() -> None:
    tracker = SequenceTracker()
    for seq in range(0, 10):
        tracker.update(seq)
    jump = 9 + MAX_DROPOUT + 10
    assert tracker.update(jump) is SeqVerdict.BAD_JUMP
    assert tracker.highest_extended == 9  # not taken yet
    assert tracker.update(jump + 1) is SeqVerdict.RESTARTED
    assert tracker.base_seq == jump + 1 and tracker.received == 1


def test_single_stray_jump_is_ignored() -> None:
    tracker = SequenceTracker()
    for seq in range(0, 10):
        tracker.update(seq)
    assert tracker.update(30000) is SeqVerdict.BAD_JUMP
    assert tracker.update(10) is SeqVerdict.ACCEPTED
    assert tracker.highest_extended == 10


@given(st.integers(0, SEQ_MOD - 1), st.integers(1, 200_000))
def test_in_order_stream_extends_exactly(start: int, count: int) -> None:
    tracker = SequenceTracker()
    step = max(1, count // 500)  # keep examples quick: sample the stream with small gaps
    tracker.update(start)  # two sequential packets end probation, then gaps are fine
    n = 1
    for n in range(1, count + 1, step):
        tracker.update((start + n) % SEQ_MOD)
    assert tracker.highest_extended == start + n


def test_timestamp_unwrapper_handles_wrap_and_reorder() -> None:
    unwrap = TimestampUnwrapper()
    assert unwrap.unwrap(0xFFFFFF60) == 0xFFFFFF60
    assert unwrap.unwrap(0x00000000) == 1 << 32  # 160 samples later, across the wrap
    assert unwrap.unwrap(0xFFFFFF60) == 0xFFFFFF60  # a reordered earlier packet stays earlier
    assert unwrap.unwrap(0x000000A0) == (1 << 32) + 160
    unwrap.reset()
    assert unwrap.unwrap(5) == 5
