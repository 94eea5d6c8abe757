"""One caller of the ``turn`` bench: Asterisk's side of an AudioSocket call that listens to the
greeting, says one recorded utterance, and notes when the agent's answer reaches it.

Asterisk's behaviour as ``res_audiosocket`` has it (``docs/measurements.md#asterisk-wire``):
the UUID first, then a 320-byte slin frame (20 ms at 8 kHz) every 20 ms whether or not anyone
speaks; hang-up is closing the socket. Times are ``time.monotonic()``, the clock the agent
process stamps its stages with.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import trio

from media.audiosocket import HEADER, encode_frame

LEG_RATE_HZ = 8000
FRAME_S = 0.020
FRAME_BYTES = 320
KIND_SLIN_8K = 0x10
QUIET_AFTER_GREETING_S = 0.8
LOUD_RMS = 300.0  # a frame of speech at telephone level; silence and dither are far below


@dataclass
class TurnTimes:
    """One turn as the caller lived it (``time.monotonic()`` seconds)."""

    speech_end: float = math.nan  # the last frame holding speech was sent
    speech_start: float = math.nan  # the first frame of the phrase was sent (bench conversations)
    first_audio: float = math.nan  # the first agent audio frame after that arrived
    reply_frames: int = 0
    greeting_frames: int = 0


@dataclass
class Ear:
    frames: list[tuple[float, bool]] = field(default_factory=list)  # arrival, loud

    def quiet_for(self, secs: float) -> bool:
        return bool(self.frames) and time.monotonic() - self.frames[-1][0] > secs


async def listen(stream: trio.SocketStream, ear: Ear) -> None:
    buf = bytearray()
    while True:
        try:
            data = await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if not data:
            return
        now = time.monotonic()
        buf += data
        while len(buf) >= HEADER.size:
            kind, length = HEADER.unpack_from(buf)
            if len(buf) < HEADER.size + length:
                break
            payload = bytes(buf[HEADER.size : HEADER.size + length])
            del buf[: HEADER.size + length]
            if kind == KIND_SLIN_8K:
                samples = np.frombuffer(payload, dtype="<i2").astype(np.float64)
                loud = bool(samples.size) and float(np.sqrt(np.mean(samples**2))) > LOUD_RMS
                ear.frames.append((now, loud))


class Mouth:
    """A frame every 20 ms: the utterance once it is queued, silence otherwise."""

    def __init__(self) -> None:
        self.pending = bytearray()
        self.speech_frames_left = 0
        self.speech_end = math.nan

    def say(self, pcm16: bytes, speech_bytes: int) -> None:
        self.pending += pcm16
        self.speech_frames_left = math.ceil(speech_bytes / FRAME_BYTES)

    async def run(self, stream: trio.SocketStream) -> None:
        start = trio.current_time()
        for slot in range(10**7):
            await trio.sleep_until(start + slot * FRAME_S)
            frame = bytes(self.pending[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\x00")
            del self.pending[:FRAME_BYTES]
            try:
                await stream.send_all(encode_frame(KIND_SLIN_8K, frame))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the call ended on the server's side
            if self.speech_frames_left:
                self.speech_frames_left -= 1
                if not self.speech_frames_left:
                    self.speech_end = time.monotonic()


class TurnTimeout(RuntimeError):
    """The call did not get as far as the turn needs (no greeting, no answer...)."""


async def _until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    # Polled: "quiet for 0.8 s" becomes true by time passing, which no event would signal.
    with trio.move_on_after(timeout_s):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.02)
        return
    raise TurnTimeout(f"no {what} within {timeout_s:g} s")


async def one_turn(port: int, pcm8k: bytes, tail_bytes: int, timeout_s: float = 30.0) -> TurnTimes:
    """Call, hear the greeting out, say ``pcm8k`` (its last ``tail_bytes`` are silence), time
    the answer, let it play, hang up. Raises :class:`TurnTimeout` if the agent never answers."""
    times = TurnTimes()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(encode_frame(0x01, uuid.uuid4().bytes))
    ear, mouth = Ear(), Mouth()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen, stream, ear)
        nursery.start_soon(mouth.run, stream)
        await _until(lambda: ear.quiet_for(QUIET_AFTER_GREETING_S), timeout_s, "greeting")
        times.greeting_frames = len(ear.frames)
        mouth.say(pcm8k, len(pcm8k) - tail_bytes)
        await _until(lambda: not math.isnan(mouth.speech_end), timeout_s, "speech sent")
        times.speech_end = mouth.speech_end
        await _until(lambda: ear.frames[-1][0] > times.speech_end, timeout_s, "agent answer")
        times.first_audio = next(t for t, _ in ear.frames if t > times.speech_end)
        await _until(lambda: ear.quiet_for(QUIET_AFTER_GREETING_S), timeout_s, "answer end")
        times.reply_frames = sum(1 for t, _ in ear.frames if t > times.speech_end)
        nursery.cancel_scope.cancel()
    await trio.aclose_forcefully(stream)  # Asterisk hangs up by closing the socket
    return times
