"""A SIP call's leg: the RTP leg for media, plus SIP signalling for answer, hangup and transfer.

Media is :class:`media.rtp_leg.RtpLeg`'s; this adds what only signalling can do. The INVITE is
answered when the call first reads or plays audio, that is once the agent link is up: a call the
control plane refuses, or whose agent cannot be reached, gets a SIP error (480), not 200 then
BYE. Hanging up sends a BYE (or that error, before the answer), and ``transfer`` sends a REFER
(RFC 3515) and, once the peer reports the new call answered (NOTIFY ``SIP/2.0 200``), ends this
one as RFC 5589's basic transfer does.
"""

from __future__ import annotations

import logging
from typing import Protocol

from media.leg import LegEvent, LegHangup
from media.rtp_leg import RtpLeg

log = logging.getLogger(__name__)


class Signalling(Protocol):
    async def answer(self) -> None:
        """Send the 200 OK with our SDP answer (once the media core is ready for audio)."""

    async def bye(self) -> None:
        """Send BYE (or a final error to an unanswered INVITE); bounded, never raises."""

    async def refer(self, target: str) -> int:
        """Send REFER to ``target``; return the transfer's final status (408 on timeout)."""


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
        await self._signalling.bye()

    async def transfer(self, target: str) -> None:
        status = await self._signalling.refer(target)
        if 200 <= status < 300:
            self.rtp.push_event(LegHangup("transferred"))
        else:
            log.info("transfer failed", extra={"target": target, "status": status})
