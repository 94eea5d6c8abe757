"""A SIP call's leg: the RTP leg for media, plus SIP signalling for hangup and transfer.

Media is :class:`media.rtp_leg.RtpLeg`'s; this adds what only signalling can do: hanging up
sends a BYE, and ``transfer`` sends a REFER (RFC 3515) and, once the peer reports the new call
answered (NOTIFY ``SIP/2.0 200``), ends this one as RFC 5589's basic transfer does.
"""

from __future__ import annotations

import logging
from typing import Protocol

from media.leg import LegEvent, LegHangup
from media.rtp_leg import RtpLeg

log = logging.getLogger(__name__)


class Signalling(Protocol):
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

    async def receive(self) -> LegEvent:
        return await self.rtp.receive()

    async def send_audio(self, pcm16: bytes) -> None:
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
