"""Sequence number and timestamp unwrapping, and source validation: RFC 3550 appendix A.1.

RTP sequence numbers wrap every 65536 packets (22 minutes at 50 packets/s) and timestamps every
2**32 samples (6.2 days at 8 kHz); the jitter buffer and the statistics need monotonic integers, so
both are extended here. A jump of more than ``MAX_DROPOUT`` packets is treated as a restart of the
sender (RFC 3550 A.1: accepted once two sequential packets confirm it), and an SSRC change resets
everything because it is a new source.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

SEQ_MOD = 1 << 16
TIMESTAMP_MOD = 1 << 32
MAX_DROPOUT = 3000  # RFC 3550 A.1 defaults
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2


class SeqVerdict(Enum):
    """What :meth:`SequenceTracker.update` decided about one packet."""

    ACCEPTED = "accepted"
    PROBATION = "probation"  # new source, not yet confirmed by MIN_SEQUENTIAL packets
    DUPLICATE_OR_LATE = "duplicate_or_late"  # within MAX_MISORDER behind: still usable
    RESTARTED = "restarted"  # big jump confirmed by a second packet: source restarted
    BAD_JUMP = "bad_jump"  # big jump, waiting to see if the next packet follows it


class TimestampUnwrapper:
    """Extends 32-bit RTP timestamps to a monotonic-ish integer across wraparound."""

    def __init__(self) -> None:
        self._last: int | None = None

    def unwrap(self, timestamp: int) -> int:
        if self._last is None:
            self._last = timestamp
            return timestamp
        delta = (timestamp - self._last) % TIMESTAMP_MOD
        if delta >= TIMESTAMP_MOD // 2:
            delta -= TIMESTAMP_MOD  # older packet (reordered): step back, do not wrap forward
        self._last += delta
        return self._last

    def reset(self) -> None:
        self._last = None


@dataclass(slots=True)
class SequenceTracker:
    """RFC 3550 A.1 ``update_seq`` with the extended (cycle-counted) sequence number.

    ``extended`` of a packet is ``cycles + seq``; reordered packets just behind the highest are
    extended relative to it so that they keep their place (needed by the jitter buffer).
    """

    base_seq: int = 0
    max_seq: int = 0
    cycles: int = 0
    bad_seq: int = SEQ_MOD + 1  # "impossible" until a jump is seen
    probation: int = MIN_SEQUENTIAL
    received: int = 0
    started: bool = False

    def reset(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.cycles = 0
        self.bad_seq = SEQ_MOD + 1
        self.received = 0
        self.started = True

    @property
    def highest_extended(self) -> int:
        return self.cycles + self.max_seq

    def extend(self, seq: int) -> int:
        """Extended number of ``seq`` relative to the highest seen (handles reorder near a wrap)."""
        delta = (seq - self.max_seq) % SEQ_MOD
        if delta >= SEQ_MOD // 2:
            delta -= SEQ_MOD
        return self.highest_extended + delta

    def update(self, seq: int) -> SeqVerdict:
        if not self.started:
            self.reset(seq)
            self.received = 1
            self.probation = MIN_SEQUENTIAL - 1  # this packet is the first of the run
            return SeqVerdict.PROBATION if self.probation else SeqVerdict.ACCEPTED
        if self.probation:
            if seq != (self.max_seq + 1) % SEQ_MOD:
                self.reset(seq)  # not sequential: the probation run starts again here
                self.received = 1
                self.probation = MIN_SEQUENTIAL - 1
                return SeqVerdict.PROBATION
            self.probation -= 1
            self._advance(seq)
            self.received += 1
            return SeqVerdict.PROBATION if self.probation else SeqVerdict.ACCEPTED
        udelta = (seq - self.max_seq) % SEQ_MOD
        if udelta < MAX_DROPOUT:
            self._advance(seq)  # in order, with a permissible gap (udelta 0 is a duplicate)
        elif udelta <= SEQ_MOD - MAX_MISORDER:
            if seq != self.bad_seq:
                self.bad_seq = (seq + 1) % SEQ_MOD
                return SeqVerdict.BAD_JUMP
            self.reset(seq)  # two sequential packets after a jump: the sender restarted
            self.received = 1
            return SeqVerdict.RESTARTED
        else:
            self.received += 1
            return SeqVerdict.DUPLICATE_OR_LATE
        self.received += 1
        return SeqVerdict.ACCEPTED

    def _advance(self, seq: int) -> None:
        if seq < self.max_seq:  # forward step across 65535 -> 0
            self.cycles += SEQ_MOD
        self.max_seq = seq

    @property
    def expected(self) -> int:
        """Packets expected since the base, RFC 3550 A.3."""
        return self.highest_extended - self.base_seq + 1 if self.started else 0
