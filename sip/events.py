"""What the SIP user agent core reports to its transport adapter: plain typed values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A new INVITE with an SDP offer; answer with ``answer()``/``reject()`` (100 already sent)."""

    call_id: str
    source: Address
    caller: str  # From URI
    callee: str  # Request-URI
    sdp: bytes


@dataclass(frozen=True, slots=True)
class ReOffer:
    """A re-INVITE (hold, resume, move): answer with ``answer()`` or ``reject()``; ``sdp`` is
    empty when it carried no offer (answer with our current SDP as the offer)."""

    call_id: str
    sdp: bytes


@dataclass(frozen=True, slots=True)
class CallConfirmed:
    """The ACK for our 2xx arrived."""

    call_id: str


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The dialog is over: the peer's BYE or CANCEL, or no ACK; the media must stop."""

    call_id: str
    reason: str  # "bye", "cancel", "no_ack"


@dataclass(frozen=True, slots=True)
class DtmfInfo:
    """A key press signalled by SIP INFO (application/dtmf-relay or application/dtmf)."""

    call_id: str
    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class ReferStatus:
    """Progress of a transfer we asked for: 202, then NOTIFY sipfrag codes (RFC 3515)."""

    call_id: str
    status: int
    final: bool


@dataclass(frozen=True, slots=True)
class OutgoingProgress:
    """A provisional response (180 Ringing, 183 Session Progress) to an INVITE we sent."""

    call_id: str
    status: int


@dataclass(frozen=True, slots=True)
class OutgoingAnswered:
    """Our INVITE was answered (2xx, ACK sent); ``sdp`` is the peer's answer to our offer."""

    call_id: str
    sdp: bytes


@dataclass(frozen=True, slots=True)
class OutgoingFailed:
    """Our INVITE ended without a call: a final error (ACKed), a timeout, or our CANCEL."""

    call_id: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    """The registration's state moved: registered (``expires_s``), failed (retry in
    ``retry_s``) or unregistered."""

    state: str  # "registered", "failed", "unregistered"
    status: int  # the registrar's final response, 408 on timeout
    expires_s: int = 0
    retry_s: float = 0.0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A datagram or request refused without a dialog; ``reason`` is a metric label."""

    reason: str
    status: int  # the response sent, 0 when the datagram was dropped


SipEvent: TypeAlias = (
    IncomingCall
    | ReOffer
    | CallConfirmed
    | CallEnded
    | DtmfInfo
    | ReferStatus
    | OutgoingProgress
    | OutgoingAnswered
    | OutgoingFailed
    | RegistrationChanged
    | Rejected
)
