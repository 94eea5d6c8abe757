"""Agent audio waiting to be played to the caller: bounded in milliseconds, cut into frames.

Pure and clock-free; the call's pacer (Trio) decides when a frame goes out. Agent audio arrives in
bursts faster than real time, so the bound matters: past ``max_ms`` new audio is dropped and
counted (never unbounded growth), and a barge-in :meth:`flush` empties it at once.
Marks (``MarkFrame``) ride along at byte positions and come back out when their audio has gone.

In-band tones (DTMF on a leg with no signalling for it) are an *overlay*: they play from the next
frame on in place of the call's audio, which goes on being consumed underneath at its own pace.
Appending them instead would push everything queued after them back by their length, and for a
live stream (an echo, real-time TTS, a bridge) that delay would never drain: ~160 ms per digit
for the rest of the call. A live stream's frame often arrives just after the slot it belongs
in, so a tone frame may go out with nothing queued under it yet: the buffer then owes that audio
and drops it when it comes (at most ``UNDER_DEBT_MAX_MS``; the pacer forgives a debt once no audio
came for a while, so an agent that starts talking later loses nothing).
"""

from __future__ import annotations

from collections import deque

from media.audio import pcm16_bytes_for_ms, pcm16_bytes_per_frame, pcm16_duration_ms

UNDER_DEBT_MAX_MS = 100  # a live stream's jitter behind its slots; beyond, it was not there


class PlayoutBuffer:
    def __init__(self, rate_hz: int, max_ms: int, frame_ms: int = 20) -> None:
        self.rate_hz = rate_hz
        self.frame_bytes = pcm16_bytes_per_frame(rate_hz, frame_ms)
        self.max_bytes = pcm16_bytes_for_ms(max_ms, rate_hz)
        self._buf = bytearray()
        self._played = 0  # bytes popped since the start of the call
        self._marks: deque[tuple[int, str]] = deque()  # (absolute byte position, name)
        self._overlay = bytearray()  # tones played over the call's audio, in its place
        self._debt = 0  # bytes of the call's audio a tone frame replaced before they came
        self._max_debt = pcm16_bytes_for_ms(UNDER_DEBT_MAX_MS, rate_hz)
        self.dropped_ms = 0.0

    @property
    def buffered_ms(self) -> float:
        return pcm16_duration_ms(len(self._buf), self.rate_hz)

    def __len__(self) -> int:
        return len(self._buf)

    def push(self, pcm16: bytes) -> float:
        """Queue audio; returns the milliseconds dropped because the buffer was full."""
        if self._debt:  # it was due under tones that already went out
            owed = min(self._debt, len(pcm16)) & ~1
            self._debt -= owed
            self._played += owed
            pcm16 = pcm16[owed:]
        room = self.max_bytes - len(self._buf)
        take = max(0, min(len(pcm16), room)) & ~1
        self._buf += pcm16[:take]
        dropped = pcm16_duration_ms(len(pcm16) - take, self.rate_hz)
        self.dropped_ms += dropped
        return dropped

    def overlay(self, pcm16: bytes) -> float:
        """Play ``pcm16`` from the next frame on instead of the call's audio (which is consumed
        underneath, so its timeline does not move); after any overlay still playing. Bounded
        like :meth:`push`; returns the milliseconds dropped."""
        room = self.max_bytes - len(self._overlay)
        take = max(0, min(len(pcm16), room)) & ~1
        self._overlay += pcm16[:take]
        return pcm16_duration_ms(len(pcm16) - take, self.rate_hz)

    def owes(self) -> bool:
        return self._debt > 0

    def forgive(self) -> None:
        """The audio owed to past tones did not come: what comes next plays."""
        self._debt = 0

    def overlaying(self) -> bool:
        return bool(self._overlay)

    def pending(self) -> bool:
        """Anything left to play: the call's audio or an overlay."""
        return bool(self._buf) or bool(self._overlay)

    def add_mark(self, name: str) -> None:
        """Remember ``name`` at the end of what is queued now."""
        self._marks.append((self._played + len(self._buf), name))

    def has_frame(self) -> bool:
        return len(self._buf) >= self.frame_bytes

    def pop_frame(self, pad: bool = False) -> bytes | None:
        """One full frame; with ``pad`` a short tail is completed with silence. None if empty.
        While an overlay plays, its frame comes out and the call's audio under it is dropped."""
        if self._overlay:
            return self._pop_overlay()
        if not self._buf or (len(self._buf) < self.frame_bytes and not pad):
            return None
        frame = bytes(self._buf[: self.frame_bytes])
        del self._buf[: self.frame_bytes]
        self._played += len(frame)
        return frame + bytes(self.frame_bytes - len(frame))

    def _pop_overlay(self) -> bytes:
        frame = bytes(self._overlay[: self.frame_bytes])
        del self._overlay[: self.frame_bytes]
        under = min(self.frame_bytes, len(self._buf))
        del self._buf[:under]
        self._played += under
        self._debt = min(self._debt + self.frame_bytes - under, self._max_debt)
        return frame + bytes(self.frame_bytes - len(frame))

    def passed_marks(self) -> list[str]:
        """Marks whose audio has all been popped, in order; each is returned once."""
        out = []
        while self._marks and self._marks[0][0] <= self._played:
            out.append(self._marks.popleft()[1])
        return out

    def flush(self) -> tuple[float, list[str]]:
        """Barge-in: drop the call's audio. Returns (ms dropped, marks cleared with it). An
        overlay plays on: key presses the agent asked for are an action, not speech to cut."""
        dropped = self.buffered_ms
        self._played += len(self._buf)
        self._buf.clear()
        marks = [name for _, name in self._marks]
        self._marks.clear()
        return dropped, marks
