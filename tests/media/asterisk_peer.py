"""An AudioSocket client that behaves like Asterisk's ``res_audiosocket`` (as observed on a real
Asterisk, ``docs/measurements.md#asterisk-wire``):
the 16-byte UUID frame first, then slin frames of 20 ms (320 bytes at 8 kHz, kind 0x10) on a
20 ms clock, DTMF as kind 0x03 with one ASCII digit, and hangup by just closing the socket.
Everything it receives is kept with its arrival time for assertions."""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field

import trio

from media.audiosocket import HEADER, encode_frame

FRAME_S = 0.020


@dataclass
class Received:
    t: float
    kind: int
    payload: bytes


@dataclass
class AsteriskPeer:
    stream: trio.SocketStream
    call_uuid: uuid.UUID = field(default_factory=uuid.uuid4)
    received: list[Received] = field(default_factory=list)
    closed_at: float | None = None
    _buf: bytearray = field(default_factory=bytearray)

    @classmethod
    async def connect(cls, port: int, send_uuid: bool = True) -> AsteriskPeer:
        peer = cls(await trio.open_tcp_stream("127.0.0.1", port))
        if send_uuid:
            await peer.send_raw(encode_frame(0x01, peer.call_uuid.bytes))
        return peer

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_dtmf(self, digit: str) -> None:
        await self.send_raw(encode_frame(0x03, digit.encode()))

    async def play(self, pcm16: bytes, kind: int = 0x10, frame_bytes: int = 320) -> None:
        """Send ``pcm16`` in real time, one frame per 20 ms slot of the Trio clock."""
        start = trio.current_time()
        for i, offset in enumerate(range(0, len(pcm16), frame_bytes)):
            await trio.sleep_until(start + i * FRAME_S)
            try:
                await self.send_raw(encode_frame(kind, pcm16[offset : offset + frame_bytes]))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the call ended on the server's side: Asterisk stops writing too

    async def read_until_closed(self) -> None:
        """Collect frames until the server closes (run it in a nursery)."""
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            now = trio.current_time()
            if not data:
                self.closed_at = now
                return
            self._buf += data
            while len(self._buf) >= HEADER.size:
                kind, length = HEADER.unpack_from(self._buf)
                if len(self._buf) < HEADER.size + length:
                    break
                payload = bytes(self._buf[HEADER.size : HEADER.size + length])
                del self._buf[: HEADER.size + length]
                self.received.append(Received(now, kind, payload))

    def audio(self) -> bytes:
        return b"".join(r.payload for r in self.received if 0x10 <= r.kind <= 0x18)

    def audio_frames(self) -> list[Received]:
        return [r for r in self.received if 0x10 <= r.kind <= 0x18]

    def got_hangup_frame(self) -> bool:
        return any(r.kind == 0x00 for r in self.received)

    async def close(self) -> None:
        await trio.aclose_forcefully(self.stream)


def header(kind: int, length: int) -> bytes:
    return struct.pack(">BH", kind, length)
