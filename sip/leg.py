"""A SIP call's leg: the RTP leg for media, plus SIP signalling for answer, hangup and transfer.

Media is :class:`media.rtp_leg.RtpLeg`'s; this adds what only signalling can do. The INVITE is
answered when the call first reads or plays audio, that is once the agent link is up: a call the
control plane refuses, or whose agent cannot be reached, gets a SIP error (480), not 200 then
BYE. Hanging up sends a BYE (or that error, before the answer), and ``refer`` starts a
:class:`ReferTransfer`: a REFER (RFC 3515) whose outcome the call reports like any transfer's
(``media.call.Call.transfer_outcome``, the tool's result, ``call_transfer_failed``). Once the
peer reports the new call answered (NOTIFY ``SIP/2.0 200``) this call ends, as RFC 5589's basic
transfer does; a refused REFER, or a NOTIFY reporting a failure (``SIP/2.0 486 Busy Here``),
leaves the caller with the agent, told why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

import trio

from media.bridge_transfer import TransferOutcome
from media.leg import LegEvent, LegHangup
from media.rtp_leg import RtpLeg
from sip.ari.causes import api_cause_code
from sip.dialog import REASONS

log = logging.getLogger(__name__)


class Signalling(Protocol):
    async def answer(self) -> None:
        """Send the 200 OK with our SDP answer (once the media core is ready for audio)."""

    async def bye(self, cause: int = 0) -> None:
        """Send BYE (or a final error to an unanswered INVITE); bounded, never raises.
        ``cause``: a Q.850 code to tell the peer (a ``Reason`` header; 0: none)."""

    async def refer(self, target: str) -> int:
        """Send REFER to ``target``; return the transfer's final status (408 on timeout)."""


def refer_outcome(status: int) -> TransferOutcome:
    """What a REFER's final status (its own answer, or its last NOTIFY's sipfrag) means for
    the transfer; 408 is also what :meth:`Signalling.refer` gives when no final word came."""
    if 200 <= status < 300:
        return TransferOutcome("answered")
    reason = REASONS.get(status, "")
    return TransferOutcome("failed", f"sip {status} {reason}".strip())


@dataclass(slots=True)
class ReferTransfer:
    """One REFER: :attr:`done` is set with :attr:`outcome` once the transfer's fate is known
    (the same shape as :class:`media.bridge_transfer.BridgeTransfer`)."""

    target: str
    leg: SipLeg
    done: trio.Event = field(default_factory=trio.Event)
    outcome: TransferOutcome = field(default_factory=lambda: TransferOutcome("transferring"))

    async def run(self) -> None:
        """Runs in the call's nursery until the REFER's final status (bounded by the
        signalling's own timeout); the caller's call ends if the transfer was answered."""
        try:
            self.outcome = refer_outcome(await self.leg.refer_status(self.target))
        finally:
            self.done.set()
        if self.outcome.status == "answered":
            self.leg.rtp.push_event(LegHangup("transferred"))
        else:
            detail = self.outcome.detail
            log.info("transfer failed", extra={"target": self.target, "detail": detail})


class SipLeg:
    kind = "sip"
    self_paced = False

    def __init__(self, rtp: RtpLeg, signalling: Signalling) -> None:
        self.rtp = rtp
        self.rate_hz = rtp.rate_hz
        self._signalling = signalling
        self._answered = False

    async def _answer(self) -> None:
        if not self._answered:
            self._answered = True
            await self._signalling.answer()

    async def receive(self) -> LegEvent:
        await self._answer()  # the call reads audio: its agent link is up, answer now
        return await self.rtp.receive()

    async def send_audio(self, pcm16: bytes) -> None:
        await self._answer()
        await self.rtp.send_audio(pcm16)

    async def clear(self) -> None:
        await self.rtp.clear()

    async def send_mark(self, name: str) -> None:
        await self.rtp.send_mark(name)

    async def send_dtmf(self, digits: str) -> None:
        await self.rtp.send_dtmf(digits)

    async def hangup(self, reason: str) -> None:
        await self.rtp.hangup(reason)
        await self._signalling.bye(api_cause_code(reason))

    def refer(self, target: str) -> ReferTransfer:
        """A transfer of this call by REFER; the call runs it (``run``) and waits on ``done``."""
        return ReferTransfer(target, self)

    async def refer_status(self, target: str) -> int:
        return await self._signalling.refer(target)
