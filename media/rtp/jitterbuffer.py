"""Adaptive jitter buffer for one inbound RTP audio stream, driven by a 20 ms playout tick.

Packets are placed by *timestamp* into 20 ms frame slots (as NetEq does), not by sequence number,
so that silence suppression, comfort noise and telephone-event periods (which consume sequence
numbers but carry no audio) become timed silence rather than false losses. A packet may hold any
duration whatever ``a=ptime`` said (RFC 3551 4.2: receivers SHOULD accept packets of 0-200 ms;
sipp's stock capture sends 30 ms packets on a 20 ms call): its payload, one byte per timestamp
unit for G.711 and G.722, is cut at slot edges into :class:`Piece` s, so a 30 ms packet fills one
slot and half of the next, and the two halves of a slot may come from two packets. The caller
pops one slot per tick, passing the time in; once playout has started every pop returns a frame,
so the call never hears a gap: an empty slot is reported as LOST (a later packet exists) or
UNDERRUN (nothing buffered), for the session to conceal.

Depth adapts: each packet's transit (arrival minus the start of the first slot it touches, in
ms: how long after its slot began a slot's last audio can arrive, so a 60 ms packet counts for
its 60 ms) goes into a window; the target depth is the spread of recent transits (95th
percentile minus minimum) rounded up to whole frames and clamped to ``[min_depth_ms,
max_depth_ms]``. When playout runs earlier than ``min transit + target`` the buffer HOLDs a frame
(delay grows); when it runs later by more than a frame it SKIPs one (delay shrinks). Times are
plain floats in milliseconds from any origin.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum

SILENCE_PT = -1  # a piece of intentional silence (telephone-event period, comfort noise)


class FrameStatus(Enum):
    PLAYED = "played"
    LOST = "lost"  # slot empty while later packets are buffered: conceal
    UNDERRUN = "underrun"  # nothing buffered (silence suppression or a stall): conceal
    HOLD = "hold"  # inserted to grow the delay: conceal, no slot consumed


@dataclass(frozen=True, slots=True)
class Piece:
    """The part of one packet that falls into one slot."""

    offset: int  # timestamp units from the slot's start
    units: int  # timestamp units covered (the payload's length, for audio)
    payload_type: int  # SILENCE_PT for intentional silence
    payload: bytes  # one byte per timestamp unit; empty for silence
    seq: int | None = None  # extended sequence number of the packet, when the caller knows it


@dataclass(frozen=True, slots=True)
class PlayoutFrame:
    status: FrameStatus
    pieces: tuple[Piece, ...] = ()  # in timestamp order; parts of the slot may be missing
    timestamp: int | None = None  # extended RTP timestamp of the slot's start (not for HOLD)


@dataclass(slots=True)
class JitterStats:
    played: int = 0
    lost: int = 0
    underruns: int = 0
    holds: int = 0
    skips: int = 0
    late: int = 0  # packets with a part past its playout slot
    duplicates: int = 0
    overflow: int = 0
    resyncs: int = 0
    partial: int = 0  # slots played with part of their audio missing


class JitterBuffer:
    def __init__(
        self,
        clock_rate_hz: int = 8000,
        frame_ms: int = 20,
        min_depth_ms: int = 40,
        max_depth_ms: int = 300,
        capacity_ms: int = 1000,
        window_packets: int = 100,
    ) -> None:
        if not 0 < frame_ms <= min_depth_ms <= max_depth_ms < capacity_ms:
            raise ValueError("need 0 < frame_ms <= min_depth_ms <= max_depth_ms < capacity_ms")
        self.clock_rate_hz = clock_rate_hz
        self.frame_ms = frame_ms
        self.min_depth_ms = min_depth_ms
        self.max_depth_ms = max_depth_ms
        self._capacity_slots = capacity_ms // frame_ms
        self.frame_units = clock_rate_hz * frame_ms // 1000  # timestamp units per slot
        self._window: deque[float] = deque(maxlen=window_packets)
        self._window_min: float | None = None  # min(self._window), kept as packets come and go
        self.target_ms: int = min_depth_ms
        self.stats = JitterStats()
        self._reset_state()

    def _reset_state(self) -> None:
        self._slots: dict[int, list[Piece]] = {}
        self._base_ts: int | None = None  # extended timestamp of slot 0
        self._next_slot: int | None = None  # None until playout starts
        self._last_seq: int | None = None
        self._since_target = 0
        self._holds_in_a_row = 0

    def _clear_window(self) -> None:
        self._window.clear()
        self._window_min = None

    def _add_to_window(self, value: float) -> None:
        """Append, keeping the minimum without a scan per tick (a scan only when it leaves)."""
        full = len(self._window) == self._window.maxlen
        evicted = self._window[0] if full and self._window else None
        self._window.append(value)
        if self._window_min is None or value <= self._window_min:
            self._window_min = value
        elif evicted is not None and evicted <= self._window_min:
            self._window_min = min(self._window)

    def reset(self) -> None:
        """A new source (SSRC change, sender restart): forget slots and timing, keep counters."""
        self._reset_state()
        self._clear_window()
        self.target_ms = self.min_depth_ms

    @property
    def depth_ms(self) -> int:
        """Buffered audio ahead of playout, counting holes, in milliseconds."""
        if not self._slots:
            return 0
        start = self._next_slot if self._next_slot is not None else min(self._slots)
        return (max(self._slots) - start + 1) * self.frame_ms

    def put(
        self,
        timestamp_ext: int,
        payload_type: int,
        payload: bytes,
        arrival_ms: float,
        seq: int | None = None,
    ) -> bool:
        """Buffer one audio packet (``len(payload)`` timestamp units from its extended
        timestamp); False if nothing of it was kept (empty, late, duplicate, overflow).

        ``seq`` (extended) lets an empty slot before a packet that directly follows the last
        one played count as the sender's silence (DTX) rather than as a loss.
        """
        return self._put(timestamp_ext, len(payload), payload_type, payload, arrival_ms, seq)

    def put_silence(
        self, timestamp_ext: int, units: int, arrival_ms: float, seq: int | None = None
    ) -> bool:
        """Mark ``units`` of intentional silence (a telephone-event period), not a loss."""
        return self._put(timestamp_ext, units, SILENCE_PT, b"", arrival_ms, seq)

    def _put(self, timestamp_ext: int, units: int, payload_type: int, payload: bytes,
             arrival_ms: float, seq: int | None) -> bool:  # fmt: skip
        if units <= 0:
            return False
        if self._base_ts is None:
            self._base_ts = timestamp_ext
        offset = timestamp_ext - self._base_ts
        first, last = offset // self.frame_units, (offset + units - 1) // self.frame_units
        anchor = self._next_slot if self._next_slot is not None else min(self._slots, default=first)
        if max(abs(first - anchor), abs(last - anchor)) >= self._capacity_slots:
            if self._slots:
                self.stats.overflow += 1
                return False
            # Empty buffer and a far timestamp: the sender jumped; restart timing from here.
            self.stats.resyncs += 1
            self._reset_state()
            self._clear_window()
            return self._put(timestamp_ext, units, payload_type, payload, arrival_ms, seq)
        # Late packets still count towards the spread: they are the jitter we failed to cover.
        self._add_to_window(arrival_ms - first * self.frame_ms)
        self._since_target += 1
        if self._since_target >= 10 or len(self._window) < 10:
            self._update_target()
        if self._next_slot is not None and first < self._next_slot:
            self.stats.late += 1
            if last < self._next_slot:
                return False
        kept = False
        from_slot = first if self._next_slot is None else max(first, self._next_slot)
        for slot in range(from_slot, last + 1):
            start = max(offset, slot * self.frame_units)
            end = min(offset + units, (slot + 1) * self.frame_units)
            cut = payload[start - offset : end - offset] if payload else b""
            piece = Piece(start - slot * self.frame_units, end - start, payload_type, cut, seq)
            kept = self._place(slot, piece) or kept
        if not kept:
            self.stats.duplicates += 1
        return kept

    def _place(self, slot: int, piece: Piece) -> bool:
        """Add ``piece`` to its slot unless it overlaps what the slot already holds."""
        pieces = self._slots.get(slot)
        if pieces is None:
            self._slots[slot] = [piece]
            return True
        end = piece.offset + piece.units
        if any(p.offset < end and piece.offset < p.offset + p.units for p in pieces):
            return False
        pieces.append(piece)
        pieces.sort(key=lambda p: p.offset)
        return True

    def _update_target(self) -> None:
        self._since_target = 0
        if not self._window:
            return
        ordered = sorted(self._window)
        spread = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] - ordered[0]
        frames = max(1, math.ceil(spread / self.frame_ms - 1e-9))
        self.target_ms = max(self.min_depth_ms, min(self.max_depth_ms, frames * self.frame_ms))

    def pop(self, now_ms: float) -> PlayoutFrame | None:
        """The frame for this tick; None only before playout has started (initial buffering)."""
        if self._next_slot is None:
            if not self._slots or self._adjustment(now_ms, min(self._slots)) > 0:
                return None
            self._next_slot = min(self._slots)
        adjust = self._adjustment(now_ms, self._next_slot)
        if adjust > 0 or self._rest_in_flight():
            self._holds_in_a_row += 1
            self.stats.holds += 1
            return PlayoutFrame(FrameStatus.HOLD)
        self._holds_in_a_row = 0
        if adjust < 0 and len(self._slots) > 1:
            self.stats.skips += 1
            self._slots.pop(self._next_slot, None)  # drop one frame to shrink the delay
            self._next_slot += 1
        slot = self._next_slot
        pieces = self._slots.pop(slot, None)
        self._next_slot += 1
        timestamp = (self._base_ts or 0) + slot * self.frame_units
        if pieces:
            self.stats.played += 1
            if sum(p.units for p in pieces) < self.frame_units:
                self.stats.partial += 1
            self._last_seq = pieces[-1].seq
            return PlayoutFrame(FrameStatus.PLAYED, tuple(pieces), timestamp)
        if self._slots and not self._sender_was_silent():
            self.stats.lost += 1
            return PlayoutFrame(FrameStatus.LOST, (), timestamp)
        self.stats.underruns += 1
        return PlayoutFrame(FrameStatus.UNDERRUN, (), timestamp)

    def _rest_in_flight(self) -> bool:
        """The slot's audio stops short and nothing later is here: the packet with the rest is
        on its way (a longer packet than the depth so far allowed for), so wait a frame for it
        rather than play a hole, up to ``max_depth_ms`` of waiting."""
        pieces = self._slots.get(self._next_slot) if self._next_slot is not None else None
        if not pieces or self._holds_in_a_row * self.frame_ms >= self.max_depth_ms:
            return False
        covered_to = pieces[-1].offset + pieces[-1].units
        return covered_to < self.frame_units and max(self._slots) == self._next_slot

    def _sender_was_silent(self) -> bool:
        """The next buffered packet follows the last played one in sequence: nothing is lost."""
        following = self._slots[min(self._slots)][0].seq
        return (
            following is not None and self._last_seq is not None and following == self._last_seq + 1
        )

    def _adjustment(self, now_ms: float, slot: int) -> int:
        """+1 to hold a frame, -1 to skip one, 0 to play on (hysteresis of one frame)."""
        if self._window_min is None:
            return 0
        # Playout offset: when the slot plays, minus when its timestamp says it was sent.
        playout_offset = now_ms - slot * self.frame_ms
        wanted = self._window_min + self.target_ms
        if playout_offset < wanted - self.frame_ms / 2:
            return 1
        if playout_offset > wanted + self.frame_ms * 1.5:
            return -1
        return 0
