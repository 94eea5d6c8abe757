"""A call leg over Twilio Media Streams: the thin Trio layer over :mod:`media.twilio`.

Twilio buffers what we send and plays it at its own pace (``self_paced``): we forward agent
audio as it comes, ask for a ``mark`` echo to learn when it has played, and send ``clear`` on
barge-in. The WebSocket is whatever :class:`~media.message_socket.MessageSocket` the control
plane hands us.
"""

from __future__ import annotations

import logging

from media.audio import TELEPHONY_RATE_HZ
from media.codecs.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from media.drain import DrainMarks
from media.hooks import CallInfo, LegCannotDo
from media.leg import LegAudio, LegDtmf, LegError, LegEvent, LegHangup, LegMarkPlayed
from media.message_socket import (
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    MessageSocket,
    MessageSocketClosed,
    accept_within,
    close_quietly,
    receive_within,
    send_within,
)
from media.twilio import Connected, Dtmf, Mark, Media, Start, TwilioProtocolError, TwilioStream

log = logging.getLogger(__name__)


class TwilioLeg:
    kind = "twilio"
    rate_hz = TELEPHONY_RATE_HZ
    self_paced = True

    def __init__(
        self,
        socket: MessageSocket,
        stream: TwilioStream,
        *,
        idle_timeout_s: float = 5.0,
        send_timeout_s: float = 2.0,
    ) -> None:
        if stream.start is None:
            raise ValueError("open a TwilioLeg with TwilioLeg.accept(): no start yet")
        self.start: Start = stream.start
        self._socket = socket
        self._stream = stream
        self._idle_timeout_s = idle_timeout_s
        self._send_timeout_s = send_timeout_s
        self._close_code = CLOSE_NORMAL
        self._done = False
        self._drains = DrainMarks()

    @classmethod
    async def accept(
        cls,
        socket: MessageSocket,
        *,
        start_timeout_s: float = 5.0,
        idle_timeout_s: float = 5.0,
        send_timeout_s: float = 2.0,
        max_media_ms: int = 200,
    ) -> TwilioLeg:
        """Read ``connected`` and ``start``; the start's custom parameters select the agent.

        Raises :class:`TwilioProtocolError` or :class:`LegError` (``start_timeout``,
        ``closed``); the socket is closed with 1008 where that is still possible.
        """
        stream = TwilioStream(max_media_ms=max_media_ms)

        def until_start(message: str | bytes) -> Start | None:
            event = stream.receive(message)
            if not isinstance(event, (Connected, Start)):
                raise TwilioProtocolError("before_start", type(event).__name__)
            return event if isinstance(event, Start) else None

        await accept_within(socket, start_timeout_s, until_start)
        return cls(socket, stream, idle_timeout_s=idle_timeout_s, send_timeout_s=send_timeout_s)

    def call_info(self, call_id: str, remote_addr: str = "") -> CallInfo:
        """The call as the control plane first sees it: custom parameters pick the agent."""
        params = self.start.custom_parameters
        return CallInfo(
            call_id=call_id,
            leg=self.kind,
            leg_ref=self.start.stream_sid,
            caller=params.get("from", params.get("caller", "")),
            callee=params.get("to", params.get("callee", "")),
            remote_addr=remote_addr,
            params={**params, "call_sid": self.start.call_sid},
        )

    @property
    def sequence_gaps(self) -> int:
        return self._stream.sequence_gaps

    async def receive(self) -> LegEvent:
        if self._done:
            raise LegError("receive_after_hangup")
        while True:
            try:
                event = self._stream.receive(
                    await receive_within(self._socket, self._idle_timeout_s)
                )
            except MessageSocketClosed as exc:
                self._done = True
                self._drains.release_all()
                return LegHangup(f"caller closed the socket ({exc.code})")
            except LegError:
                self._close_code = CLOSE_POLICY_VIOLATION
                raise
            if isinstance(event, Media):
                if event.track == "inbound":
                    return LegAudio(ulaw_to_pcm16(event.ulaw))
            elif isinstance(event, Dtmf):
                return LegDtmf(event.digit)
            elif isinstance(event, Mark):
                if not self._drains.played(event.name):
                    return LegMarkPlayed(event.name)
            elif not isinstance(event, Connected):  # Stop; start twice is an error already
                self._done = True
                return LegHangup("caller hung up (stop)")

    async def _send(self, text: str) -> None:
        await send_within(self._socket, text, self._send_timeout_s)

    async def send_audio(self, pcm16: bytes) -> None:
        if pcm16:
            await self._send(self._stream.media(pcm16_to_ulaw(pcm16)))

    async def clear(self) -> None:
        await self._send(self._stream.clear())

    async def send_mark(self, name: str) -> None:
        await self._send(self._stream.mark(name))

    async def drain(self, timeout_s: float) -> bool:
        """Wait until Twilio has played all audio sent so far (a mark's echo), at most
        ``timeout_s``; True if it has. The call's reader must be running ``receive()``."""
        return await self._drains.drain(self.send_mark, timeout_s)

    async def send_dtmf(self, digits: str) -> None:
        raise LegCannotDo("Twilio Media Streams cannot send DTMF to the caller")

    async def hangup(self, reason: str) -> None:
        """Closing the socket ends the stream; Twilio then goes on with the call's TwiML."""
        self._done = True
        self._drains.release_all()
        log.debug("twilio stream %s: hangup (%s)", self.start.stream_sid, reason)
        await close_quietly(self._socket, self._close_code, reason)
