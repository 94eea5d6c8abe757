"""A call leg over Asterisk chan_websocket: the thin Trio layer over :mod:`media.chan_websocket`.

Asterisk re-frames and re-times what we send (``self_paced``), holding up to ~20 s in its own
queue. Its flow control is MEDIA_XOFF/MEDIA_XON: while off we hold audio and marks in a queue
bounded in milliseconds and drop the oldest audio, counted, when it is full. Barge-in is
FLUSH_MEDIA, which also discards our queued marks in Asterisk: we report those as played at
once, as Twilio does on ``clear``, so the call session sees one behaviour for every leg.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque

import trio

from media.audio import pcm16_duration_ms
from media.chan_websocket import (
    AsteriskError,
    ChanWebsocketConnection,
    ChanWebsocketEvent,
    DtmfEnd,
    MarkProcessed,
    MediaFrame,
    MediaStart,
    MediaXon,
)
from media.codecs.g711 import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, ulaw_to_pcm16
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
from media.metrics import MediaMetrics

log = logging.getLogger(__name__)

_DECODE = {"ulaw": ulaw_to_pcm16, "alaw": alaw_to_pcm16}
_ENCODE = {"ulaw": pcm16_to_ulaw, "alaw": pcm16_to_alaw}


class ChanWebsocketLeg:
    kind = "chan_websocket"
    self_paced = True

    def __init__(
        self,
        socket: MessageSocket,
        connection: ChanWebsocketConnection,
        *,
        idle_timeout_s: float = 5.0,
        send_timeout_s: float = 2.0,
        xoff_queue_ms: int = 2_000,
        metrics: MediaMetrics | None = None,
    ) -> None:
        if connection.started is None:
            raise ValueError("open a ChanWebsocketLeg with ChanWebsocketLeg.accept()")
        self.start: MediaStart = connection.started
        self.rate_hz = self.start.rate_hz
        self._socket = socket
        self._conn = connection
        self._idle_timeout_s = idle_timeout_s
        self._send_timeout_s = send_timeout_s
        self._xoff_queue_ms = xoff_queue_ms
        self._metrics = metrics
        self._send_lock = trio.Lock()  # keeps audio, marks and flushes in order on the wire
        self._held: deque[bytes | str] = deque()  # pcm16 frames or mark names, while XOFF
        self._held_ms = 0.0
        self._marks_in_asterisk: list[str] = []
        self._flushed_marks: deque[str] = deque()
        self._close_code = CLOSE_NORMAL
        self._done = False
        self._drains = DrainMarks()
        self.dropped_ms = 0.0
        self.asterisk_errors = 0

    @classmethod
    async def accept(
        cls,
        socket: MessageSocket,
        *,
        start_timeout_s: float = 5.0,
        idle_timeout_s: float = 5.0,
        send_timeout_s: float = 2.0,
        xoff_queue_ms: int = 2_000,
        metrics: MediaMetrics | None = None,
    ) -> ChanWebsocketLeg:
        """Wait for MEDIA_START (Asterisk sends it right after the upgrade)."""
        connection = ChanWebsocketConnection()

        def media_start(message: str | bytes) -> MediaStart | None:
            if isinstance(message, bytes):
                connection.receive_binary(message)  # before MEDIA_START: raises before_start
            else:
                connection.receive_text(message)  # refuses anything but MEDIA_START first
            return connection.started

        await accept_within(socket, start_timeout_s, media_start)
        return cls(
            socket,
            connection,
            idle_timeout_s=idle_timeout_s,
            send_timeout_s=send_timeout_s,
            xoff_queue_ms=xoff_queue_ms,
            metrics=metrics,
        )

    def call_info(self, call_id: str, remote_addr: str = "") -> CallInfo:
        """The call as the control plane first sees it. Channel variables come only with the
        JSON control format; a dialplan sets CALLER and CALLEE (``Set(CALLER=${CALLERID(num)})``)
        and whatever selects the agent."""
        variables = self.start.channel_variables
        return CallInfo(
            call_id=call_id,
            leg=self.kind,
            leg_ref=self.start.channel_id,
            caller=variables.get("CALLER", ""),
            callee=variables.get("CALLEE", ""),
            remote_addr=remote_addr,
            params={**variables, "channel": self.start.channel, "format": self.start.format},
        )

    @property
    def xoff(self) -> bool:
        return self._conn.xoff

    async def receive(self) -> LegEvent:
        if self._flushed_marks:
            return LegMarkPlayed(self._flushed_marks.popleft())
        if self._done:
            raise LegError("receive_after_hangup")
        while True:
            try:
                message = await receive_within(self._socket, self._idle_timeout_s)
                event: ChanWebsocketEvent
                if isinstance(message, bytes):
                    event = self._conn.receive_binary(message)
                else:
                    event = self._conn.receive_text(message)
            except MessageSocketClosed as exc:
                self._done = True
                self._drains.release_all()
                return LegHangup(f"caller closed the socket ({exc.code})")
            except LegError:
                self._close_code = CLOSE_POLICY_VIOLATION
                raise
            leg_event = await self._on_event(event)
            if leg_event is not None:
                return leg_event

    async def _on_event(self, event: ChanWebsocketEvent) -> LegEvent | None:
        if isinstance(event, MediaFrame):
            decode = _DECODE.get(self.start.format)
            return LegAudio(decode(event.audio) if decode else event.audio)
        if isinstance(event, DtmfEnd):
            return LegDtmf(event.digit)
        if isinstance(event, MarkProcessed):
            if event.correlation_id in self._marks_in_asterisk:
                self._marks_in_asterisk.remove(event.correlation_id)
            if self._drains.played(event.correlation_id):
                return None
            return LegMarkPlayed(event.correlation_id)
        if isinstance(event, MediaXon):
            await self._release_held()
        elif isinstance(event, AsteriskError):
            self.asterisk_errors += 1
            log.warning("chan_websocket %s: Asterisk: %s", self.start.channel_id, event.error_text)
        return None  # XOFF (state kept by the connection), QUEUE_DRAINED, STATUS, unknown

    async def _send(self, message: str | bytes) -> None:
        await send_within(self._socket, message, self._send_timeout_s)

    async def _send_item(self, item: bytes | str) -> None:
        if isinstance(item, str):
            self._marks_in_asterisk.append(item)
            await self._send(self._conn.mark_media(item))
        else:
            encode = _ENCODE.get(self.start.format)
            for message in self._conn.media(encode(item) if encode else item):
                await self._send(message)

    def _hold(self, item: bytes | str) -> None:
        if isinstance(item, bytes):
            self._held_ms += pcm16_duration_ms(len(item), self.rate_hz)
        self._held.append(item)
        while self._held_ms > self._xoff_queue_ms:  # drop the oldest audio, keep marks
            oldest = next(i for i in self._held if isinstance(i, bytes))
            self._held.remove(oldest)
            lost_ms = pcm16_duration_ms(len(oldest), self.rate_hz)
            self._held_ms -= lost_ms
            self.dropped_ms += lost_ms
            if self._metrics is not None:
                self._metrics.drops.labels(where="chan_websocket_xoff").inc(lost_ms)

    async def _release_held(self) -> None:
        async with self._send_lock:
            while self._held and not self._conn.xoff:
                item = self._held.popleft()
                if isinstance(item, bytes):
                    self._held_ms -= pcm16_duration_ms(len(item), self.rate_hz)
                await self._send_item(item)

    async def _send_or_hold(self, item: bytes | str) -> None:
        async with self._send_lock:
            if self._conn.xoff or self._held:
                self._hold(item)
            else:
                await self._send_item(item)

    async def send_audio(self, pcm16: bytes) -> None:
        if pcm16:
            await self._send_or_hold(pcm16)

    async def send_mark(self, name: str) -> None:
        await self._send_or_hold(name)

    async def clear(self) -> None:
        async with self._send_lock:
            flushed = [*self._marks_in_asterisk, *(m for m in self._held if isinstance(m, str))]
            # Sent first, so reported first; our own drain marks just wake their waiters.
            self._flushed_marks.extend(m for m in flushed if not self._drains.played(m))
            self._held.clear()
            self._held_ms = 0.0
            self._marks_in_asterisk.clear()
            await self._send(self._conn.flush_media())

    async def drain(self, timeout_s: float) -> bool:
        """Wait until Asterisk has played all audio sent so far (MARK_MEDIA processed), at
        most ``timeout_s``; True if it has. The call's reader must be running ``receive()``."""
        return await self._drains.drain(self.send_mark, timeout_s)

    async def send_dtmf(self, digits: str) -> None:
        raise LegCannotDo("chan_websocket has no command to send DTMF")

    async def hangup(self, reason: str) -> None:
        """HANGUP asks Asterisk to hang the channel up; then we close, bounded in time."""
        if self._done:
            await close_quietly(self._socket, self._close_code, reason)
            return
        self._done = True
        self._drains.release_all()
        with trio.move_on_after(1.0):
            with contextlib.suppress(MessageSocketClosed):
                await self._socket.send(self._conn.hangup())
        await close_quietly(self._socket, self._close_code, reason)
