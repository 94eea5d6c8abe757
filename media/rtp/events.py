"""What an RTP session reports to its adapter besides audio: digits, the source it latched onto
or a new one, and the peer's RTCP BYE (RFC 3550 6.6). Plain values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

Address: TypeAlias = tuple[str, int]


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class SourceLatched:
    address: Address
    ssrc: int


@dataclass(frozen=True, slots=True)
class SourceChanged:
    old_ssrc: int
    new_ssrc: int


@dataclass(frozen=True, slots=True)
class PeerBye:
    """RTCP BYE from the latched source: the peer has stopped sending (RFC 3550 6.6)."""

    reason: str


SessionEvent: TypeAlias = DtmfReceived | SourceLatched | SourceChanged | PeerBye
