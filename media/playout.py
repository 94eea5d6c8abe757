"""Agent audio waiting to be played to the caller: bounded in milliseconds, cut into frames.

Pure and clock-free; the call's pacer (Trio) decides when a frame goes out. Agent audio arrives in
bursts faster than real time, so the bound matters: past ``max_ms`` new audio is dropped and
counted (never unbounded growth), and a barge-in :meth:`flush` empties it at once.
Marks (``MarkFrame``) ride along at byte positions and come back out when their audio has gone.
"""

from __future__ import annotations

from collections import deque

from media.audio import pcm16_bytes_for_ms, pcm16_bytes_per_frame, pcm16_duration_ms


class PlayoutBuffer:
    def __init__(self, rate_hz: int, max_ms: int, frame_ms: int = 20) -> None:
        self.rate_hz = rate_hz
        self.frame_bytes = pcm16_bytes_per_frame(rate_hz, frame_ms)
        self.max_bytes = pcm16_bytes_for_ms(max_ms, rate_hz)
        self._buf = bytearray()
        self._played = 0  # bytes popped since the start of the call
        self._marks: deque[tuple[int, str]] = deque()  # (absolute byte position, name)
        self.dropped_ms = 0.0

    @property
    def buffered_ms(self) -> float:
        return pcm16_duration_ms(len(self._buf), self.rate_hz)

    def __len__(self) -> int:
        return len(self._buf)

    def push(self, pcm16: bytes) -> float:
        """Queue audio; returns the milliseconds dropped because the buffer was full."""
        room = self.max_bytes - len(self._buf)
        take = max(0, min(len(pcm16), room)) & ~1
        self._buf += pcm16[:take]
        dropped = pcm16_duration_ms(len(pcm16) - take, self.rate_hz)
        self.dropped_ms += dropped
        return dropped

    def add_mark(self, name: str) -> None:
        """Remember ``name`` at the end of what is queued now."""
        self._marks.append((self._played + len(self._buf), name))

    def has_frame(self) -> bool:
        return len(self._buf) >= self.frame_bytes

    def pop_frame(self, pad: bool = False) -> bytes | None:
        """One full frame; with ``pad`` a short tail is completed with silence. None if empty."""
        if not self._buf or (len(self._buf) < self.frame_bytes and not pad):
            return None
        frame = bytes(self._buf[: self.frame_bytes])
        del self._buf[: self.frame_bytes]
        self._played += len(frame)
        return frame + bytes(self.frame_bytes - len(frame))

    def passed_marks(self) -> list[str]:
        """Marks whose audio has all been popped, in order; each is returned once."""
        out = []
        while self._marks and self._marks[0][0] <= self._played:
            out.append(self._marks.popleft()[1])
        return out

    def flush(self) -> tuple[float, list[str]]:
        """Barge-in: drop everything. Returns (ms dropped, marks cleared with it)."""
        dropped = self.buffered_ms
        self._played += len(self._buf)
        self._buf.clear()
        marks = [name for _, name in self._marks]
        self._marks.clear()
        return dropped, marks
