"""The seam between a call's leg side and whoever it talks with (its peer).

A call's leg side (:mod:`media.leg_side`: leg I/O, the streaming resamplers, the playout buffer
and the pacer) exchanges 16 kHz, 20 ms PCM16 frames with exactly one :class:`AudioPeer` at a time:
the agent link (:mod:`media.agent_peer`) or a bridge port (:mod:`media.bridge_core`). Uplink is a
non-blocking hand-over of each caller frame; downlink is the peer calling :class:`Downlink`'s
methods, which only queue into the call's playout. Neither side ever waits on the other, so a
slow peer costs its own counted drops and never stalls the leg, and the call can change peers
between two frames (agent -> bridge -> agent) without either one knowing about the other.
"""

from __future__ import annotations

from typing import Literal, Protocol, TypeAlias

from media.leg import LegDtmf, LegMarkPlayed

PeerKind: TypeAlias = Literal["none", "agent", "bridge"]
PeerEvent: TypeAlias = LegDtmf | LegMarkPlayed


class AudioPeer(Protocol):
    """Where a call's caller audio goes, one frame at a time."""

    kind: PeerKind

    def uplink(self, pcm16: bytes) -> None:
        """One frame of caller audio at 16 kHz; never blocks (a full queue drops, counted)."""

    async def leg_event(self, event: PeerEvent) -> None:
        """A key press from the caller, or a mark whose audio has played; bounded in time."""


class Downlink(Protocol):
    """What a peer may do to the call's playout (implemented by the leg side)."""

    def play(self, pcm16: bytes, rate_hz: int) -> None:
        """Queue audio for the caller (resampled to the leg's rate); never blocks."""

    def add_mark(self, name: str) -> None:
        """Report ``name`` back through :meth:`AudioPeer.leg_event` once the audio queued
        before it has played."""

    async def interrupt(self) -> list[str]:
        """Barge-in: drop what is queued, tell the leg; returns the marks cleared with it."""


class NoPeer:
    """Nobody: caller audio is discarded. A call waiting for its bridge (a transfer's callee
    before the answer) or between two peers."""

    kind: PeerKind = "none"

    def uplink(self, pcm16: bytes) -> None:
        return None

    async def leg_event(self, event: PeerEvent) -> None:
        return None
