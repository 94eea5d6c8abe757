"""RFC 4733 telephone-events (DTMF in RTP): payload codec, decoder and encoder.

One key press is one *event*, identified by the RTP timestamp of its first packet (section 2.5.1):
every packet of the press repeats that timestamp with a growing duration, and the end is sent
three times (2.5.1.4) because any of them can be lost. The decoder therefore reports a digit
exactly once per event timestamp: at its first end packet, or, if every end packet was lost, when
the next event begins or the caller flushes at the end of the stream.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

EVENT_CODES = "0123456789*#ABCD"  # 2.3.1: events 0-15 in this order
END_PACKET_REPEATS = 3
_PAYLOAD = struct.Struct("!BBH")


class DtmfError(ValueError):
    """A telephone-event payload that cannot be decoded, or a digit we cannot send."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-byte payload of RFC 4733 section 2.3."""

    event: int
    end: bool
    volume: int  # 0..63, in -dBm0
    duration: int  # timestamp units since the event's start

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255 or not 0 <= self.volume <= 63:
            raise DtmfError(f"event {self.event} / volume {self.volume} out of range")
        if not 0 <= self.duration <= 0xFFFF:
            raise DtmfError(f"duration {self.duration} is not 16-bit")

    def pack(self) -> bytes:
        flags = (0x80 if self.end else 0) | self.volume
        return _PAYLOAD.pack(self.event, flags, self.duration)

    @classmethod
    def unpack(cls, payload: bytes) -> TelephoneEvent:
        # 2.3: several events may be stacked (RFC 2198 redundancy uses another PT); take the first.
        if len(payload) < _PAYLOAD.size:
            raise DtmfError(f"telephone-event payload of {len(payload)} bytes")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """One key press, reported once."""

    digit: str
    duration_ms: int
    ended: bool  # False when every end packet was lost and the press was inferred


def digit_of(event: int) -> str | None:
    return EVENT_CODES[event] if event < len(EVENT_CODES) else None


class DtmfDecoder:
    """Turns a source's telephone-event packets into one :class:`DtmfDigit` per key press."""

    def __init__(self, clock_rate_hz: int = 8000) -> None:
        self._clock_rate_hz = clock_rate_hz
        self._current: tuple[int, int, int] | None = None  # (timestamp, event, duration)
        self._reported: set[int] = set()  # timestamps already reported (bounded, see below)
        self.non_dtmf_events = 0

    def _ms(self, duration: int) -> int:
        return duration * 1000 // self._clock_rate_hz

    def receive(self, timestamp: int, payload: bytes) -> list[DtmfDigit]:
        """Feed one packet's payload and RTP timestamp; raises :class:`DtmfError` if malformed."""
        event = TelephoneEvent.unpack(payload)
        if timestamp in self._reported:
            return []  # a retransmitted end packet, or a late packet of a finished press
        out: list[DtmfDigit] = []
        if self._current is not None and self._current[0] != timestamp:
            out.extend(self._finish(ended=False))  # the previous press lost all its ends
        digit = digit_of(event.event)
        if digit is None:
            self.non_dtmf_events += 1  # flash-hook, tones: not a digit, not an error
            self._mark_reported(timestamp)
            return out
        previous = self._current[2] if self._current is not None else 0
        self._current = (timestamp, event.event, max(previous, event.duration))
        if event.end:
            out.extend(self._finish(ended=True))
        return out

    def flush(self) -> list[DtmfDigit]:
        """End of stream (or a long silence): report a press whose end packets never came."""
        return self._finish(ended=False) if self._current is not None else []

    def _finish(self, ended: bool) -> list[DtmfDigit]:
        assert self._current is not None
        timestamp, event, duration = self._current
        self._current = None
        self._mark_reported(timestamp)
        return [DtmfDigit(EVENT_CODES[event], self._ms(duration), ended)]

    def _mark_reported(self, timestamp: int) -> None:
        # Only recent presses can still be retransmitted: keep a handful, never grow.
        if len(self._reported) >= 16:
            self._reported.clear()
        self._reported.add(timestamp)


@dataclass(frozen=True, slots=True)
class EventPacket:
    """One outgoing telephone-event packet: its payload, marker bit and the event's timestamp."""

    payload: bytes
    marker: bool
    timestamp: int


class DtmfEncoder:
    """Produces the packets of one key press, one call of :meth:`next_packets` per frame tick.

    The first packet has the marker bit (2.5.1.1 "start of a new event"); each following tick
    sends the duration so far; the last tick sends the end packet three times, all with the
    event's start timestamp.
    """

    def __init__(
        self,
        digit: str,
        timestamp: int,
        duration_ms: int = 100,
        frame_ms: int = 20,
        clock_rate_hz: int = 8000,
        volume: int = 10,
    ) -> None:
        if len(digit) != 1 or digit.upper() not in EVENT_CODES:
            raise DtmfError(f"not a DTMF digit: {digit!r}")
        if not frame_ms <= duration_ms <= 8000:
            raise DtmfError(f"duration {duration_ms} ms outside {frame_ms}..8000 ms")
        self.event = EVENT_CODES.index(digit.upper())
        self.timestamp = timestamp
        self._step = frame_ms * clock_rate_hz // 1000
        self._total = duration_ms * clock_rate_hz // 1000
        self._volume = volume
        self._sent = 0  # duration already announced
        self.done = False

    def next_packets(self) -> list[EventPacket]:
        """The packets for this frame tick; empty once the press has been fully sent."""
        if self.done:
            return []
        first = self._sent == 0
        self._sent = min(self._total, self._sent + self._step)
        end = self._sent >= self._total
        payload = TelephoneEvent(self.event, end, self._volume, self._sent).pack()
        if not end:
            return [EventPacket(payload, first, self.timestamp)]
        self.done = True
        return [
            EventPacket(payload, first and i == 0, self.timestamp)
            for i in range(END_PACKET_REPEATS)
        ]
