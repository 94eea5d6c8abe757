"""What the call session needs from a leg (AudioSocket, RTP, Twilio media streams,
chan_websocket, browser). A leg adapter is a thin Trio layer over a sans-I/O protocol module.

Audio crosses this seam as mono PCM16 at the leg's own ``rate_hz``; the call session resamples
to and from the link's 16 kHz and, unless ``self_paced``, paces outbound audio in 20 ms frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeAlias


@dataclass(frozen=True, slots=True)
class LegAudio:
    pcm16: bytes


@dataclass(frozen=True, slots=True)
class LegDtmf:
    digit: str
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class LegMarkPlayed:
    """The leg played everything before a mark we sent (Twilio ``mark``, MEDIA_MARK_PROCESSED)."""

    name: str


@dataclass(frozen=True, slots=True)
class LegHangup:
    reason: str


LegEvent: TypeAlias = LegAudio | LegDtmf | LegMarkPlayed | LegHangup


class LegError(Exception):
    """The leg's peer broke its protocol or its transport; ``reason`` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Leg(Protocol):
    """One connected caller. ``receive`` raises :class:`LegError`; every send is bounded in time."""

    kind: str  # "audiosocket", "rtp", "twilio", "chan_websocket", "browser"
    rate_hz: int
    self_paced: bool  # True where the peer buffers and times playout itself

    async def receive(self) -> LegEvent:
        """Next event from the caller's side; :class:`LegHangup` once, then the leg is done."""

    async def send_audio(self, pcm16: bytes) -> None:
        """Play one frame (at most 20 ms unless ``self_paced``)."""

    async def clear(self) -> None:
        """Barge-in: drop whatever the peer still buffers (Twilio ``clear``, FLUSH_MEDIA)."""

    async def send_mark(self, name: str) -> None:
        """Ask the peer to report when the audio sent so far has played (where it can)."""

    async def send_dtmf(self, digits: str) -> None:
        """Send key presses by the leg's own signalling, or raise LegCannotDo."""

    async def hangup(self, reason: str) -> None:
        """Tell the peer the call is over and close; never raises, bounded in time."""
