"""A phone call to the offline agent, every part real but the control plane (a recorder: the real
one runs in test_agent_transfer.py): an Asterisk-like AudioSocket caller
(``tests/media/asterisk_peer.py``) talks through the media core to ``callbridge agent`` (its own
process, the offline pipecat pipeline: Silero VAD, Whisper tiny.en, the MiniLM intent router,
the piper voice) over the protobuf agent link on a loopback WebSocket.

The caller's words are a recorded utterance (``rtp_fixtures/speech``, 16 kHz), resampled to
8 kHz slin as Asterisk sends it, in 20 ms frames on a 20 ms clock. What the caller hears back is
checked by transcribing it with Whisper in the test. Deadlines are generous and nothing asserts
on wall time: the machine may be loaded.
"""

from __future__ import annotations

import logging
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
import trio

from ai_pipeline.engines.models import ModelStore
from ai_pipeline.engines.stt import transcribe_pcm16
from media.audiosocket import encode_frame
from media.audiosocket_server import serve_audiosocket
from media.call import CallEnv
from media.config import HostPort, MediaConfig
from media.hooks import AgentAssignment, CallHandle, CallInfo, ToolOutcome
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from tests.media.asterisk_peer import AsteriskPeer, Received

pytestmark = pytest.mark.slow

SPEECH_DIR = Path(__file__).resolve().parents[2] / "rtp_fixtures" / "speech"
LEG_RATE_HZ = 8000
FRAME_BYTES = 320  # 20 ms of slin at 8 kHz
SILENCE = bytes(FRAME_BYTES)
SPEECH_RMS = 300.0  # piper speech at 8 kHz is in the thousands; silence and dither are ~0
LONG_GREETING = (
    # One long first sentence: piper hands over audio a sentence at a time, so several seconds
    # of it are queued in the core when the caller talks over it, however loaded the machine.
    "Welcome to the callbridge demo line, where this greeting goes on for a long time on "
    "purpose, so that the caller has plenty of time to talk over it before it ends. "
    "You can ask for sales, billing or technical support."
)


def caller_utterance(name: str) -> bytes:
    """A fixture utterance as Asterisk would send it: 8 kHz signed 16-bit mono."""
    with wave.open(str(SPEECH_DIR / name), "rb") as wav:
        rate_hz = wav.getframerate()
        pcm16 = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    out = soxr.resample(pcm16, rate_hz, LEG_RATE_HZ)
    return np.asarray(out, dtype="<i2").tobytes()


def rms(pcm16: bytes) -> float:
    samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


def levels_dbfs(pcm16: bytes) -> tuple[float, float]:
    """(active speech level, peak) in dBFS: mean power of the 10 ms blocks above -45 dBFS."""
    x = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
    blocks = x[: x.size // 80 * 80].reshape(-1, 80)
    power = (blocks**2).mean(axis=1)
    speech = power[power > (32768 * 10 ** (-45 / 20)) ** 2]
    level = 10 * np.log10(speech.mean() / 32768**2)
    return float(level), float(20 * np.log10(np.abs(x).max() / 32768))


@dataclass
class AgentCallHooks:
    """The control plane's side, recorded with Trio times: the agent, transcripts, tools."""

    greeting: str
    transcripts: list[tuple[float, str, str, bool]] = field(default_factory=list)
    tools: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    hungup: list[tuple[str, str]] = field(default_factory=list)
    ended: trio.Event = field(default_factory=trio.Event)

    async def call_created(self, info: CallInfo) -> AgentAssignment:
        return AgentAssignment("offline-agent", "c1", {"greeting": self.greeting})

    async def call_answered(self, call: CallHandle) -> None:
        return None

    async def call_hungup(self, call_id: str, cause: str, reason: str) -> None:
        self.hungup.append((cause, reason))
        self.ended.set()

    async def transcript(self, call_id: str, role: str, text: str, final: bool) -> None:
        self.transcripts.append((trio.current_time(), role, text, final))

    async def dtmf_received(self, call_id: str, digit: str, duration_ms: int) -> None:
        return None

    async def execute_tool(
        self, call: CallHandle, name: str, arguments: dict[str, Any]
    ) -> ToolOutcome:
        # The control plane is not under test here: every tool answers an error, as an absent
        # one would (the real transfer, control plane and far end: test_agent_transfer.py).
        self.tools.append((trio.current_time(), name, arguments))
        return ToolOutcome({"error": f"{name} not available in this test"}, is_error=True)

    def said(self, role: str, *, final: bool | None = None) -> list[tuple[float, str]]:
        return [
            (t, text)
            for t, r, text, f in self.transcripts
            if r == role and (final is None or f == final)
        ]


class Caller:
    """Asterisk's side of the call: a frame every 20 ms, speech when there is some to say."""

    def __init__(self, peer: AsteriskPeer) -> None:
        self.peer = peer
        self._pending = bytearray()
        self.speech_done = trio.Event()

    def say(self, pcm16: bytes) -> None:
        self.speech_done = trio.Event()
        self._pending += pcm16

    async def run(self) -> None:
        start = trio.current_time()
        for slot in range(100_000):
            await trio.sleep_until(start + slot * 0.020)
            if self._pending:
                frame = bytes(self._pending[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\x00")
                del self._pending[:FRAME_BYTES]
                if not self._pending:
                    self.speech_done.set()
            else:
                frame = SILENCE
            try:
                await self.peer.send_raw(encode_frame(0x10, frame))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    def heard(self, after: float = -np.inf, before: float = np.inf) -> list[Received]:
        return [r for r in self.peer.audio_frames() if after <= r.t < before]

    async def wait_until_quiet(
        self, after: float = -np.inf, quiet_s: float = 0.6, timeout_s: float = 30.0
    ) -> None:
        """Until agent audio has arrived after ``after`` and then none for ``quiet_s``."""
        with trio.fail_after(timeout_s):
            while True:
                frames = self.heard(after=after)
                if frames and trio.current_time() - frames[-1].t > quiet_s:
                    return
                await trio.sleep(0.05)


async def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    with trio.move_on_after(timeout_s):
        while not predicate():
            await trio.sleep(0.05)
        return
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture(scope="module")
def whisper() -> Any:
    """The same Whisper the agent uses, to check what the caller actually heard."""
    return ModelStore().whisper()


def heard_text(whisper: Any, frames: list[Received]) -> str:
    pcm8 = np.frombuffer(b"".join(f.payload for f in frames), dtype="<i2")
    pcm16 = np.asarray(soxr.resample(pcm8, LEG_RATE_HZ, 16000), dtype="<i2").tobytes()
    return transcribe_pcm16(whisper, pcm16)


@dataclass
class Core:
    """The media core under test: its AudioSocket port and what it counts."""

    port: int
    env: CallEnv

    def counter(self, name: str) -> float:
        return self.env.metrics.registry.get_sample_value(name) or 0.0


async def start_core(nursery: trio.Nursery, agent_url: str, hooks: AgentCallHooks) -> Core:
    """The media core on a free port, reporting to ``hooks``."""
    cfg = MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=agent_url)
    env = CallEnv(config=cfg, hooks=hooks, metrics=MediaMetrics(), registry=CallRegistry())
    return Core(await nursery.start(serve_audiosocket, env), env)


@dataclass
class Flushes:
    """Barge-in flushes as the media core logs them: (Trio time, milliseconds dropped)."""

    seen: list[tuple[float, float]] = field(default_factory=list)


@pytest.fixture
def flushes() -> Iterator[Flushes]:
    record = Flushes()

    class Handler(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            if rec.getMessage() == "barge-in":
                record.seen.append((trio.current_time(), float(rec.__dict__["dropped_ms"])))

    logger = logging.getLogger("media.leg_side")
    handler, level = Handler(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield record
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_caller_barges_in_and_the_agent_stops_talking(
    nursery: trio.Nursery, offline_agent: str, whisper: Any, flushes: Flushes
) -> None:
    hooks = AgentCallHooks(LONG_GREETING)
    core = await start_core(nursery, offline_agent, hooks)
    caller = Caller(await AsteriskPeer.connect(core.port))
    async with trio.open_nursery() as call:
        call.start_soon(caller.peer.read_until_closed)
        call.start_soon(caller.run)

        # About a second into the greeting, the caller talks over it.
        await wait_for(lambda: len(caller.heard()) >= 50, 30, "a second of the greeting")
        spoke_at = trio.current_time()
        caller.say(caller_utterance("opening_hours.wav"))  # answered without a tool
        await wait_for(lambda: flushes.seen, 30, "the barge-in flush")
        await wait_for(lambda: hooks.said("caller", final=True), 30, "the caller's words")
        await caller.wait_until_quiet(after=hooks.said("caller", final=True)[0][0])
        await caller.peer.close()
        with trio.fail_after(15):
            await hooks.ended.wait()
        call.cancel_scope.cancel()

    # The agent told the core to flush, and the core dropped the greeting it had queued...
    flushed_at, dropped_ms = flushes.seen[0]
    assert flushed_at > spoke_at
    assert core.counter("callbridge_playout_flushes_total") == len(flushes.seen)
    assert dropped_ms > 1000, "seconds of the first sentence were still queued"
    # ...so the caller stopped hearing it at once: nothing more until the reply, bar the
    # frame or two already on their way when the flush happened. The agent's TTS stopped too:
    # of a greeting over ten seconds long, the caller heard only what played before the flush.
    ((understood_at, caller_text),) = hooks.said("caller", final=True)
    assert not hooks.tools
    assert len(caller.heard(after=flushed_at, before=understood_at)) <= 10
    greeting_heard = caller.heard(before=understood_at)
    assert len(greeting_heard) * 20 < 5000
    assert "welcome" in heard_text(whisper, greeting_heard).lower()
    # The caller's request was still understood and answered, and the caller heard the answer.
    # The greeting's transcript is what the caller heard of it, cut short (not final).
    ((_, heard),) = hooks.said("agent", final=False)
    assert heard.startswith("Welcome to the") and LONG_GREETING.startswith(heard)
    assert len(heard) < len(LONG_GREETING) / 2
    assert "open" in caller_text.lower()
    reply_frames = caller.heard(after=understood_at)  # "...connect you to sales, billing..."
    assert rms(b"".join(f.payload for f in reply_frames)) > SPEECH_RMS
    assert "sales" in heard_text(whisper, reply_frames).lower()
