"""An in-memory agent link for driving ``run_call`` in tests: two asyncio queues."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

from ai_pipeline.link import LinkClosed
from proto.messages import Audio, LinkFrame

FRAME_MS = 20
RATE_HZ = 16000
FRAME_BYTES = RATE_HZ * FRAME_MS // 1000 * 2
SPEECH_DIR = Path(__file__).resolve().parents[2] / "rtp_fixtures" / "speech"


class MemoryLink:
    """The agent's end (``recv``/``send``) plus the core's end (``to_agent``/``from_agent``)."""

    def __init__(self) -> None:
        self.to_agent: asyncio.Queue[LinkFrame | None] = asyncio.Queue()
        self.from_agent: asyncio.Queue[LinkFrame] = asyncio.Queue()
        self.sent: list[LinkFrame] = []
        self.closed = False

    async def recv(self) -> LinkFrame:
        frame = await self.to_agent.get()
        if frame is None:
            self.closed = True
            raise LinkClosed("core closed the link")
        return frame

    async def send(self, frame: LinkFrame) -> None:
        if self.closed:
            raise LinkClosed("link is closed")
        self.sent.append(frame)
        await self.from_agent.put(frame)

    def close(self) -> None:
        self.to_agent.put_nowait(None)


def load_wav_pcm16(name: str) -> bytes:
    with wave.open(str(SPEECH_DIR / name), "rb") as wav:
        assert wav.getframerate() == RATE_HZ and wav.getnchannels() == 1
        return wav.readframes(wav.getnframes())


def frames_of(pcm16: bytes) -> list[Audio]:
    pad = (-len(pcm16)) % FRAME_BYTES
    pcm16 = pcm16 + b"\x00" * pad
    return [Audio(pcm16[i : i + FRAME_BYTES], RATE_HZ) for i in range(0, len(pcm16), FRAME_BYTES)]


def silence_ms(ms: int) -> bytes:
    return b"\x00" * (RATE_HZ * ms // 1000 * 2)


async def play(link: MemoryLink, pcm16: bytes, *, speed: float = 1.0) -> None:
    """Send audio as 20 ms frames, ``speed`` times faster than real time, on a fixed schedule.

    Frame ``i`` is due ``i`` frame times after the first: a late wake-up is made up at the next
    frame instead of delaying every later one. Sleeping a frame time after each send made a
    loaded machine's caller slower than real time (each sleep overshoots), so a recorded pause
    lasted longer by the agent's wall clock, and pauses decide turn-taking.
    """
    loop = asyncio.get_running_loop()
    start_s, frame_s = loop.time(), FRAME_MS / 1000 / speed
    for i, frame in enumerate(frames_of(pcm16), start=1):
        await link.to_agent.put(frame)
        await asyncio.sleep(max(0.0, start_s + i * frame_s - loop.time()))
