"""Signalling for one SIP call, in the Trio adapter: what :class:`sip.leg.SipLeg` and
:class:`sip.outbound.OutboundLeg` ask of SIP (dial, answer, BYE, REFER), as commands to the
user agent, and what the listener learnt about the call (its media, its end, its ACK, REFER
progress, a placed call's answer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from sip.call_media import CallMedia, OfferedMedia
from sip.events import ReferStatus
from sip.headers import SipHeaderError, parse_uri

if TYPE_CHECKING:
    from sip.server import SipServer

ACK_WAIT_S = 5.0  # a transfer waits this long for the ACK of our 200
REFER_TIMEOUT_S = 40.0  # 64*T1 for the REFER itself, then the new call's ringing, bounded


class SipCall:
    """Signalling for one call (implements :class:`sip.leg.Signalling`)."""

    def __init__(self, server: SipServer, call_id: str) -> None:
        self.server = server
        self.call_id = call_id
        self.media: CallMedia | None = None
        self.ended: str | None = None
        self.refer_send, self.refer_recv = trio.open_memory_channel[ReferStatus](8)
        self.confirmed = trio.Event()  # our 200's ACK arrived: the dialog may carry requests
        # A call we place: our offer, then the answer (media) or why there is none (failure).
        self.offered: OfferedMedia | None = None
        self.failure: str | None = None
        self.outcome = trio.Event()
        self.dial_to: tuple[str, str, tuple[str, int]] = ("", "", ("", 0))

    async def dial(self) -> None:
        """Send the INVITE with our offer (a call we place)."""
        target, from_uri, hop = self.dial_to
        if self.offered is not None and self.ended is None:
            now = trio.current_time()
            self.server.ua.invite(target, from_uri, self.offered.sdp, hop, now, self.call_id)
            await self.server.flush()

    async def answer(self) -> None:
        if self.media is not None and self.ended is None:
            self.server.ua.answer(self.call_id, self.media.answer_sdp, trio.current_time())
            await self.server.flush()

    async def bye(self, cause: int = 0) -> None:
        self.server.ua.bye(self.call_id, trio.current_time(), cause)
        await self.server.flush()

    async def refer(self, target: str) -> int:
        ua = self.server.ua
        dialog = ua.dialogs.get(self.call_id)
        if dialog is None:
            return 481
        # Not before the caller's ACK: through a multi-process proxy a REFER sent right after
        # our 200 can overtake it, and the caller sees a request in a dialog it does not have.
        with trio.move_on_after(ACK_WAIT_S):
            await self.confirmed.wait()
        if not self.confirmed.is_set():
            return 408
        if ":" not in target:  # a bare number or name: at the caller's domain
            try:
                target = f"sip:{target}@{parse_uri(dialog.remote_uri).host}"
            except SipHeaderError:
                return 400
        if not ua.refer(self.call_id, target, trio.current_time()):
            return 491
        await self.server.flush()
        with trio.move_on_after(REFER_TIMEOUT_S):
            async for status in self.refer_recv:
                if status.final or (200 <= status.status < 300 and status.status != 202):
                    return status.status
        return 408
