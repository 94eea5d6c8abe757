"""The core's 20 ms frames in, RTP packets of exactly the negotiated ``ptime`` out, sans-I/O.

The media core paces agent audio in 20 ms frames; an SDP answer may have agreed on another
packet time (``a=ptime:30`` from many SBCs, 10/40/60 from others). RFC 3551 4.2 and RFC 4566 6
make ptime the duration of the *packets*: each one must hold exactly that much audio and advance
the timestamp by as much, and packets should leave that far apart, since many far ends clock
their playout by packet arrival. So frames are cut and joined into ``ptime`` packets here, and
each packet is given the time it is due on the wire.

When it is due follows from when the core handed over the audio, not from a clock of our own:
the frame that completes a packet reached us at ``push`` time ``t``; the packet's last sample is
``excess`` earlier in the stream than that frame's last one, so the packet belongs on the wire
at ``t - excess + slack``. ``slack`` (frame length minus gcd(frame, ptime): 0 for 20/40/60 ms,
10 ms for 10/30 ms) is the largest ``excess`` can be, so no packet is due before its audio is
here, and consecutive packets are exactly ``ptime`` apart whenever the frames were 20 ms apart
(30 ms packets go out at 20, 50, 80, 110 ms from frames at 0, 20, 40, ...). A catch-up burst or a
hiccup of the core's pacer passes through as it came, which is what a pacer stall would look
like at 20 ms too. For 20 ms nothing waits: each frame is one packet, due at once.

A stream that stops (the agent fell silent) leaves part of a packet: once the next frame is
``PAUSE_S`` overdue, the part is completed with silence and sent, so the talkspurt's last words
are not held back until it speaks again. A frame that comes sooner is a stall (a loaded machine:
the pacer catches up from 0.1 s and restarts its grid after that, ``media/pacing.py``), not a
pause: its audio continues the packet, since padding there would put a hole in speech. Waiting
that long costs a tail little: at most one packet's part, the end of an utterance.
"""

from __future__ import annotations

import math
from collections import deque

from media.audio import FRAME_MS, pcm16_bytes_per_frame, pcm16_duration_ms

MAX_READY_MS = 1000  # packets waiting for their time: far more than any catch-up burst
PAUSE_S = 0.3  # no frame for this long after the last: the stream paused, it did not stall


class Repacketizer:
    def __init__(self, rate_hz: int, ptime_ms: int, frame_ms: int = FRAME_MS) -> None:
        if ptime_ms <= 0 or frame_ms <= 0:
            raise ValueError("ptime_ms and frame_ms must be positive")
        self.rate_hz = rate_hz
        self.ptime_ms = ptime_ms
        self.packet_bytes = pcm16_bytes_per_frame(rate_hz, ptime_ms)
        self._frame_s = frame_ms / 1000
        self._slack_s = (frame_ms - math.gcd(frame_ms, ptime_ms)) / 1000
        self._max_ready = max(1, MAX_READY_MS // ptime_ms)
        self._pending = bytearray()  # audio not yet making a whole packet
        self._ready: deque[tuple[float, bytes]] = deque()  # (due_s, pcm16), due times ascending
        self._last_push_s = -math.inf
        self.dropped_packets = 0  # over MAX_READY_MS waiting: only a stalled sender gets here

    def push(self, pcm16: bytes, now_s: float) -> None:
        """One frame from the core (any whole number of samples), handed over at ``now_s``."""
        self._pending += pcm16[: len(pcm16) - len(pcm16) % 2]
        self._last_push_s = now_s
        while len(self._pending) >= self.packet_bytes:
            excess_s = (
                pcm16_duration_ms(len(self._pending) - self.packet_bytes, self.rate_hz) / 1000
            )
            due_s = max(now_s, now_s + self._slack_s - excess_s)
            self._queue(due_s, bytes(self._pending[: self.packet_bytes]))
            del self._pending[: self.packet_bytes]

    def _queue(self, due_s: float, pcm16: bytes) -> None:
        if self._ready:  # in order, always (a burst can complete a later packet sooner)
            due_s = max(due_s, self._ready[-1][0])
        if len(self._ready) >= self._max_ready:
            self._ready.popleft()
            self.dropped_packets += 1
        self._ready.append((due_s, pcm16))

    def due(self, now_s: float) -> list[bytes]:
        """The packets (PCM16, ``ptime`` each) to send now, in order."""
        if self._pending and now_s >= self._flush_at_s:
            pad = self.packet_bytes - len(self._pending)
            self._queue(now_s, bytes(self._pending) + bytes(pad))  # the talkspurt's tail
            self._pending.clear()
        packets = []
        while self._ready and self._ready[0][0] <= now_s:
            packets.append(self._ready.popleft()[1])
        return packets

    @property
    def _flush_at_s(self) -> float:
        return self._last_push_s + PAUSE_S

    @property
    def next_due_s(self) -> float | None:
        """When :meth:`due` next has something to give; None while nothing is held."""
        if self._ready:
            return self._ready[0][0]
        return self._flush_at_s if self._pending else None

    @property
    def pending_ms(self) -> float:
        """Audio held, whole packets and the part of one."""
        held = len(self._pending) + self.packet_bytes * len(self._ready)
        return pcm16_duration_ms(held, self.rate_hz)

    def clear(self) -> None:
        """Barge-in, hold or a key press: what was not sent yet is not to be heard."""
        self._pending.clear()
        self._ready.clear()
