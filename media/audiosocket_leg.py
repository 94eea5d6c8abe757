"""The AudioSocket leg: a Trio TCP stream around :class:`media.audiosocket.AudioSocketConnection`.

Thin on purpose: read bytes, feed the codec, map its events to leg events; every wait for data has
the idle deadline and every write that has to wait has the send deadline. The per-frame path
goes through :class:`media.fastio.FastSocket`: a frame the kernel takes at once costs one
``write`` and no scheduling round. Asterisk signals hangup by closing the socket (no hangup
frame), and a close while we write can surface as a reset: both are a caller hangup.
"""

from __future__ import annotations

import contextlib
import uuid

import trio

from media.audio import TELEPHONY_RATE_HZ
from media.audiosocket import (
    NEED_DATA,
    Audio,
    AudioSocketConnection,
    AudioSocketError,
    CallUuid,
    Dtmf,
    ErrorFlag,
    Event,
    Hangup,
    PeerError,
)
from media.fastio import FastSocket
from media.hooks import LegCannotDo
from media.leg import LegAudio, LegDtmf, LegError, LegEvent, LegHangup

_READ_BYTES = 16384
_HANGUP_SEND_S = 0.5


class AudioSocketLeg:
    kind = "audiosocket"
    self_paced = False  # Asterisk writes what we send straight to the channel: we pace

    def __init__(
        self,
        stream: trio.SocketStream,
        conn: AudioSocketConnection,
        idle_timeout_s: float,
        send_timeout_s: float,
    ) -> None:
        self._stream = stream
        self._fast = FastSocket(stream)
        self._conn = conn
        self._idle_timeout_s = idle_timeout_s
        self._send_timeout_s = send_timeout_s
        self._closed = False
        self._unsent = b""  # the part of a frame the kernel did not take (see flush_audio)
        self.rate_hz = TELEPHONY_RATE_HZ  # until the first audio frame says otherwise

    async def read_uuid(self) -> uuid.UUID:
        """The first frame must be the call's UUID (res_audiosocket always sends it first)."""
        event = await self._next_codec_event()
        if not isinstance(event, CallUuid):
            raise LegError("no_uuid", f"first frame was {type(event).__name__}")
        return event.uuid

    async def receive(self) -> LegEvent:
        return self._leg_event(await self._next_codec_event())

    def _leg_event(self, event: Event) -> LegEvent:
        if isinstance(event, Audio):
            self.rate_hz = event.rate_hz
            return LegAudio(event.pcm16)
        if isinstance(event, Dtmf):
            return LegDtmf(event.digit)
        if isinstance(event, Hangup):
            self._closed = True
            return LegHangup("caller closed the socket" if event.by_eof else "caller hung up")
        if isinstance(event, PeerError):
            if event.flags & ErrorFlag.HANGUP:
                return LegHangup("asterisk reported hangup")
            raise LegError("peer_error", f"asterisk error flags {event.flags!r}")
        raise LegError("duplicate_uuid", "a second UUID frame")

    # ---- read by the process's shared reader (media.tick.Readers) -------------------------

    @property
    def idle_timeout_s(self) -> float:
        return self._idle_timeout_s

    def fileno(self) -> int:
        return self._stream.socket.fileno()

    def read_nowait(self) -> list[LegEvent]:
        """Every event the socket holds now (one read), without waiting: ``[]`` if none.
        Ends with :class:`LegHangup` at the caller's hangup; raises :class:`LegError`."""
        events = self._parsed()
        if events and isinstance(events[-1], LegHangup):
            return events
        try:
            data = self._fast.receive_nowait(_READ_BYTES)
        except trio.BrokenResourceError:
            data = b""  # a reset is how a hangup sometimes arrives
        except trio.ClosedResourceError:
            raise LegError("closed", "socket closed") from None
        if data is not None:
            self._conn.receive_data(data)
            events += self._parsed()
        return events

    def _parsed(self) -> list[LegEvent]:
        events: list[LegEvent] = []
        while True:
            try:
                event = self._conn.next_event()
            except AudioSocketError as exc:
                raise LegError(exc.reason, exc.detail) from None
            if event is NEED_DATA:
                return events
            events.append(self._leg_event(event))  # type: ignore[arg-type]
            if isinstance(events[-1], LegHangup):
                return events

    async def _next_codec_event(self) -> Event:
        while True:
            try:
                event = self._conn.next_event()
            except AudioSocketError as exc:
                raise LegError(exc.reason, exc.detail) from None
            if event is not NEED_DATA:
                return event  # type: ignore[return-value]
            self._conn.receive_data(await self._read())

    async def _read(self) -> bytes:
        with trio.move_on_after(self._idle_timeout_s):
            try:
                return await self._fast.receive_some(_READ_BYTES)
            except trio.BrokenResourceError:
                return b""  # a reset is how a hangup sometimes arrives
            except trio.ClosedResourceError:
                raise LegError("closed", "socket closed") from None
        raise LegError("idle_timeout", f"nothing from the caller for {self._idle_timeout_s} s")

    async def send_audio(self, pcm16: bytes) -> None:
        """One frame. Returns without a checkpoint when the kernel takes it whole (the pacer
        checkpoints once per frame anyway); only a full socket waits, under the deadline."""
        if not self.send_audio_nowait(pcm16):
            await self.flush_audio()

    def send_audio_nowait(self, pcm16: bytes) -> bool:
        """One frame, as far as the kernel takes it now (no checkpoint): False when the rest
        waits for :meth:`flush_audio` (the shared tick's pacing, :mod:`media.tick`)."""
        data = self._conn.send_audio(pcm16, self.rate_hz)
        if self._unsent:  # (the pacer sends nothing while a frame waits; kept in order anyway)
            self._unsent += data
            return False
        try:
            written = self._fast.send_nowait(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise LegError("closed", "socket closed while sending") from None
        if written < len(data):
            self._unsent = data[written:]
            return False
        return True

    async def flush_audio(self) -> None:
        data, self._unsent = self._unsent, b""
        if data:
            await self._send(data)

    async def _send(self, data: bytes) -> None:
        try:
            with trio.fail_after(self._send_timeout_s):
                await self._stream.send_all(data)
        except trio.TooSlowError:
            detail = f"caller not reading for {self._send_timeout_s} s"
            raise LegError("send_timeout", detail) from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise LegError("closed", "socket closed while sending") from None

    async def clear(self) -> None:
        """Nothing to clear: Asterisk holds no more than the frame it is playing."""

    async def send_mark(self, name: str) -> None:
        """AudioSocket has no marks; the call reports them to the agent itself."""

    async def send_dtmf(self, digits: str) -> None:
        raise LegCannotDo("AudioSocket carries only audio to Asterisk")

    async def hangup(self, reason: str) -> None:
        if not self._closed:
            self._closed = True
            with trio.move_on_after(_HANGUP_SEND_S):
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._stream.send_all(self._conn.send_hangup())
        await trio.aclose_forcefully(self._stream)
