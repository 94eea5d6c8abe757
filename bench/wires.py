"""How a simulated caller talks to the server: Asterisk AudioSocket over TCP, or Twilio Media
Streams over WebSocket. Both carry 8 kHz PCM16 to the caller's timing loop (:mod:`bench.loadgen`),
which does not care which wire it runs on.

Both ends of each wire's protocol come from :mod:`media` (``encode_frame``/``HEADER`` for
AudioSocket, :class:`~media.twilio.TwilioPeer` for Twilio); this module only moves bytes, on
Trio. The WebSocket client is the ``websockets`` library's sans-I/O ``ClientProtocol``.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Protocol

import trio
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.uri import parse_uri

from media.audiosocket import HEADER, HEADER_BYTES, Kind, encode_frame
from media.codecs.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from media.twilio import OutboundMedia, TwilioPeer, TwilioProtocolError

_READ_BYTES = 65536


class WireClosed(Exception):
    """The server closed or reset the connection."""


class Wire(Protocol):
    async def send_audio(self, pcm16: bytes) -> None: ...

    async def receive_audio(self) -> list[bytes]:
        """The audio frames that one network read brought; raises :class:`WireClosed` at the end."""
        ...

    async def send_dtmf(self, digit: str) -> None: ...

    async def hang_up(self) -> None: ...

    async def aclose(self) -> None: ...


class AudioSocketWire:
    """Asterisk's side: kind 0x01 with the UUID first, then kind 0x10 slin 8 kHz frames."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    @classmethod
    async def open(cls, host: str, port: int, call_uuid: str) -> AudioSocketWire:
        wire = cls(await trio.open_tcp_stream(host, port))
        await wire._send(encode_frame(Kind.UUID, uuid.UUID(call_uuid).bytes))
        return wire

    async def _send(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise WireClosed(repr(exc)) from None

    async def send_audio(self, pcm16: bytes) -> None:
        await self._send(encode_frame(Kind.SLIN, pcm16))

    async def send_dtmf(self, digit: str) -> None:
        await self._send(encode_frame(Kind.DTMF, digit.encode("ascii")))

    async def hang_up(self) -> None:
        await self._send(encode_frame(Kind.HANGUP))

    async def receive_audio(self) -> list[bytes]:
        frames: list[bytes] = []
        while not frames:
            try:
                data = await self._stream.receive_some(_READ_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise WireClosed(repr(exc)) from None
            if not data:
                raise WireClosed("eof")
            self._buffer += data
            while len(self._buffer) >= HEADER_BYTES:
                kind, length = HEADER.unpack_from(self._buffer)
                if len(self._buffer) < HEADER_BYTES + length:
                    break
                payload = bytes(self._buffer[HEADER_BYTES : HEADER_BYTES + length])
                del self._buffer[: HEADER_BYTES + length]
                if kind == Kind.HANGUP:
                    raise WireClosed("hangup frame")
                if kind == Kind.SLIN:
                    frames.append(payload)
        return frames

    async def aclose(self) -> None:
        await self._stream.aclose()


class TwilioWire:
    """Twilio's side of Media Streams: ``connected`` and ``start``, then mu-law ``media``."""

    def __init__(self, stream: trio.abc.Stream, protocol: ClientProtocol, peer: TwilioPeer) -> None:
        self._stream = stream
        self._ws = protocol
        self._peer = peer
        # The caller's sender and its reader (a pong, a close's answer) both write: one at a time
        self._sending = trio.Lock()

    @classmethod
    async def open(cls, url: str, call_uuid: str) -> TwilioWire:
        uri = parse_uri(url)
        stream = await trio.open_tcp_stream(uri.host, uri.port)
        return await cls.handshake(stream, url, call_uuid)

    @classmethod
    async def handshake(cls, stream: trio.abc.Stream, url: str, call_uuid: str) -> TwilioWire:
        """WebSocket handshake on ``stream``, then Twilio's ``connected`` and ``start``."""
        sid = "MZ" + uuid.UUID(call_uuid).hex
        peer = TwilioPeer(stream_sid=sid, call_sid="CA" + sid[2:])
        wire = cls(stream, ClientProtocol(parse_uri(url)), peer)
        wire._ws.send_request(wire._ws.connect())
        await wire._flush()
        while not any(isinstance(e, Response) for e in await wire._read_events()):
            pass
        if wire._ws.state is not State.OPEN:
            raise WireClosed(f"handshake failed: {wire._ws.handshake_exc}")
        await wire._send_text(peer.connected())
        await wire._send_text(peer.start())
        return wire

    async def _flush(self) -> None:
        async with self._sending:  # (taken inside: bytes go out in the order they were queued)
            data = b"".join(self._ws.data_to_send())
            if data:
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise WireClosed(repr(exc)) from None

    async def _read_events(self) -> list[Request | Response | Frame]:
        try:
            data = await self._stream.receive_some(_READ_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise WireClosed(repr(exc)) from None
        if data:
            self._ws.receive_data(data)
        else:
            self._ws.receive_eof()
        events = list(self._ws.events_received())
        await self._flush()
        if not data or self._ws.state is State.CLOSED:
            raise WireClosed("eof")
        return events

    async def _send_text(self, text: str) -> None:
        if self._ws.state is not State.OPEN:
            raise WireClosed("not open")
        self._ws.send_text(text.encode())
        await self._flush()

    async def send_audio(self, pcm16: bytes) -> None:
        await self._send_text(self._peer.media(pcm16_to_ulaw(pcm16)))

    async def send_dtmf(self, digit: str) -> None:
        await self._send_text(self._peer.dtmf(digit))

    async def hang_up(self) -> None:
        await self._send_text(self._peer.stop())

    async def receive_audio(self) -> list[bytes]:
        frames: list[bytes] = []
        while not frames:
            for event in await self._read_events():
                # Twilio sends text; pipecat's transport may send the same JSON as binary.
                if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
                    try:
                        message = self._peer.parse(bytes(event.data).decode(errors="replace"))
                    except TwilioProtocolError as exc:  # a server bug is the call's error
                        raise WireClosed(f"protocol: {exc}") from None
                    if isinstance(message, OutboundMedia):
                        frames.append(ulaw_to_pcm16(message.ulaw))
        return frames

    async def aclose(self) -> None:
        if self._ws.state is State.OPEN:
            self._ws.send_close()
            with contextlib.suppress(WireClosed):
                await self._flush()
        await self._stream.aclose()
