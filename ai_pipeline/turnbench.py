"""Honest figures for the offline agent: STT word accuracy, turn latency, CPU per call.

Run: ``.venv/bin/python -m ai_pipeline.turnbench [--calls 1,5,10] [--seconds 8]``. It drives
:class:`~ai_pipeline.pipeline.CallAgent` over an in-process queue link (no sockets, no media
core), feeding the ``rtp_fixtures/speech`` utterances in real time, 20 ms at a time.

- Word accuracy: Whisper tiny.en on each fixture against ``transcripts.tsv``.
- Turn latency, measured from the end of the caller's speech: VAD stop, STT final, LLM first
  output (text or tool call), TTS first audio, first agent audio on the link.
- CPU per call: N calls listening (silence through VAD) in real time, process CPU per call as a
  share of one core, with the CPU of the feeding tasks alone subtracted. That is pipecat's
  per-call overhead plus Silero, without STT/LLM/TTS inference.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
import wave
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from pipecat.frames.frames import (
    FunctionCallInProgressFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed

from ai_pipeline.engines.models import ModelStore
from ai_pipeline.engines.stt import transcribe_pcm16
from ai_pipeline.link import LinkClosed
from ai_pipeline.pipeline import CallAgent
from proto.messages import Audio, CallStart, FunctionCall, FunctionCallResult, LinkFrame

RATE_HZ = 16000
FRAME_MS = 20
FRAME_BYTES = RATE_HZ * FRAME_MS // 1000 * 2
FIXTURE_TAIL_MS = 300  # silence generate.py appends after each utterance
SPEECH_DIR = Path(__file__).resolve().parents[1] / "rtp_fixtures" / "speech"
NUMBER_WORDS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five"}


def words(text: str) -> list[str]:
    """Lower-case words without punctuation; Whisper writes digits, references write words."""
    return [NUMBER_WORDS.get(t, t) for t in re.findall(r"[a-z0-9']+", text.lower())]


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Word-level Levenshtein distance (substitutions, insertions, deletions)."""
    row = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        prev, row[0] = row[0], i
        for j, hyp in enumerate(hypothesis, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ref != hyp))
    return row[-1]


def load_fixture(name: str) -> bytes:
    with wave.open(str(SPEECH_DIR / name), "rb") as wav:
        return wav.readframes(wav.getnframes())


def fixture_transcripts() -> list[tuple[str, str]]:
    rows = (SPEECH_DIR / "transcripts.tsv").read_text(encoding="utf-8").splitlines()
    return [(name, text) for name, _, text in (r.partition("\t") for r in rows if r)]


class QueueLink:
    """An :class:`~ai_pipeline.link.AgentLink` over two asyncio queues (None ends the call)."""

    def __init__(self) -> None:
        self.inbound: asyncio.Queue[LinkFrame | None] = asyncio.Queue()
        self.outbound: asyncio.Queue[tuple[float, LinkFrame]] = asyncio.Queue()

    async def recv(self) -> LinkFrame:
        frame = await self.inbound.get()
        if frame is None:
            raise LinkClosed("bench call over")
        return frame

    async def send(self, frame: LinkFrame) -> None:
        await self.outbound.put((time.monotonic(), frame))


class FirstSeen(BaseObserver):
    """Wall time at which each watched frame type was first pushed after ``since``."""

    def __init__(self) -> None:
        super().__init__()
        self.since = 0.0
        self.seen: dict[str, float] = {}

    async def on_push_frame(self, data: FramePushed) -> None:
        now = time.monotonic()
        if now < self.since:
            return
        frame = data.frame
        for key, kinds in (
            ("vad_stop", (VADUserStoppedSpeakingFrame,)),
            ("stt_final", (TranscriptionFrame,)),
            ("llm_first", (LLMTextFrame, FunctionCallInProgressFrame)),
            ("tts_first_audio", (TTSAudioRawFrame,)),
        ):
            if isinstance(frame, kinds) and key not in self.seen:
                self.seen[key] = now


async def feed(link: QueueLink, pcm16: bytes, stop: asyncio.Event | None = None) -> None:
    """Send ``pcm16`` in real time, then silence until ``stop`` is set (if given)."""
    started = time.monotonic()
    sent = 0
    silence = b"\x00" * FRAME_BYTES
    while sent < len(pcm16) or (stop is not None and not stop.is_set()):
        chunk = pcm16[sent : sent + FRAME_BYTES] if sent < len(pcm16) else silence
        chunk = chunk.ljust(FRAME_BYTES, b"\x00")
        await link.inbound.put(Audio(chunk, RATE_HZ))
        sent += FRAME_BYTES
        # Sleep to the frame's due time, not a fixed 20 ms, so the feed does not drift.
        await asyncio.sleep(max(0.0, started + sent / (RATE_HZ * 2) - time.monotonic()))


async def measure_turn(models: ModelStore, wav: str) -> dict[str, float]:
    """Milliseconds from the end of the caller's speech to each stage of the agent's answer."""
    link = QueueLink()
    lead = b"\x00" * (RATE_HZ * 2 // 2)  # 0.5 s before speaking
    speech = load_fixture(wav)
    speech_end_s = (len(lead) + len(speech)) / (RATE_HZ * 2) - FIXTURE_TAIL_MS / 1000
    observer = FirstSeen()
    agent = CallAgent(
        CallStart("bench", agent_config={"greeting": ""}), link, models, {}, observers=[observer]
    )
    agent_task = asyncio.create_task(agent.run())
    stop = asyncio.Event()
    t0 = time.monotonic()
    observer.since = t0 + speech_end_s
    feeder = asyncio.create_task(feed(link, lead + speech, stop))
    result: dict[str, float] = {}
    try:
        async with asyncio.timeout(20):
            while True:
                at, frame = await link.outbound.get()
                if isinstance(frame, FunctionCall):
                    result.setdefault("tool_call_on_link", at)
                    await link.inbound.put(FunctionCallResult(frame.tool_call_id, frame.name, "ok"))
                elif isinstance(frame, Audio) and at >= observer.since:
                    result["first_audio_on_link"] = at
                    break
    finally:
        stop.set()
        await link.inbound.put(None)
        feeder.cancel()
        with suppress(asyncio.CancelledError):
            await feeder
        await asyncio.wait_for(agent_task, 10)
    result.update(observer.seen)
    return {k: (v - observer.since) * 1000 for k, v in result.items()}


def line_payload(line: str, seconds: float) -> bytes:
    """What a listening call carries: ``silent`` (digital silence) or ``floor`` (a mu-law line's
    quietest noise, samples of +-8 and +-16, which no VAD shortcut for silence skips)."""
    samples = int(RATE_HZ * seconds)
    if line == "silent":
        return b"\x00" * (2 * samples)
    if line != "floor":
        raise ValueError(f"line: expected silent or floor, got {line!r}")
    levels = (-16, -8, 8, 16)
    return b"".join(
        levels[(i * 7 + i // 3) % 4].to_bytes(2, "little", signed=True) for i in range(samples)
    )


async def measure_cpu(
    models: ModelStore, calls: int, seconds: float, line: str = "silent"
) -> float:
    """Share of one core per listening call (%), feeder CPU subtracted."""
    payload = line_payload(line, seconds)

    async def feeders_only() -> float:
        links = [QueueLink() for _ in range(calls)]
        cpu = time.process_time()
        tasks = [asyncio.create_task(feed(link, payload)) for link in links]
        await asyncio.gather(*tasks)
        return time.process_time() - cpu

    links = [QueueLink() for _ in range(calls)]
    agents = [
        asyncio.create_task(
            CallAgent(CallStart(f"cpu-{i}", agent_config={"greeting": ""}), link, models, {}).run()
        )
        for i, link in enumerate(links)
    ]
    await asyncio.sleep(1.0)  # let the pipelines start before measuring
    cpu = time.process_time()
    wall = time.monotonic()
    await asyncio.gather(*(feed(link, payload) for link in links))
    used = time.process_time() - cpu
    elapsed = time.monotonic() - wall
    for link in links:
        await link.inbound.put(None)
    await asyncio.wait_for(asyncio.gather(*agents), 20)
    baseline = await feeders_only()
    return max(0.0, used - baseline) / elapsed / calls * 100


def stt_accuracy(models: ModelStore) -> tuple[float, list[tuple[str, str, float]]]:
    rows = []
    errors = total = 0
    for name, reference in fixture_transcripts():
        pcm16 = load_fixture(name)
        started = time.perf_counter()
        hypothesis = transcribe_pcm16(models.whisper(), pcm16)
        rows.append((name, hypothesis, time.perf_counter() - started))
        errors += word_errors(words(reference), words(hypothesis))
        total += len(words(reference))
    return 1 - errors / total, rows


async def main_async(ns: argparse.Namespace) -> None:
    models = ModelStore()
    started = time.perf_counter()
    models.preload_offline()
    print(f"models loaded in {time.perf_counter() - started:.2f} s")

    accuracy, rows = stt_accuracy(models)
    print(f"\nSTT word accuracy (Whisper tiny.en int8, {len(rows)} fixtures): {accuracy:.1%}")
    for name, text, secs in rows:
        print(f"  {name:22s} {secs * 1000:6.0f} ms  {text}")

    print("\nTurn latency, ms after the caller stops speaking (median of runs):")
    stages = [
        "vad_stop",
        "stt_final",
        "llm_first",
        "tool_call_on_link",
        "tts_first_audio",
        "first_audio_on_link",
    ]
    print(f"  {'utterance':22s} " + " ".join(f"{s:>19s}" for s in stages))
    for wav in ns.turns:
        runs = [await measure_turn(models, wav) for _ in range(ns.repeat)]
        cells = []
        for stage in stages:
            values = [r[stage] for r in runs if stage in r]
            cells.append(f"{statistics.median(values):19.0f}" if values else f"{'-':>19s}")
        print(f"  {wav:22s} " + " ".join(cells))

    print(f"\nAgent CPU per listening call ({ns.seconds:g} s of a {ns.line} line, VAD on):")
    for calls in ns.calls:
        share = await measure_cpu(models, calls, ns.seconds, ns.line)
        print(f"  {calls:3d} calls: {share:5.1f}% of a core per call")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--calls", type=lambda s: [int(x) for x in s.split(",")], default=[1, 5, 10]
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--line",
        choices=("silent", "floor"),
        default="silent",
        help="what the listening calls carry: digital silence, or a mu-law line's floor noise",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--turns", nargs="*", default=["opening_hours.wav", "transfer_sales.wav"])
    ns = parser.parse_args(argv)
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    asyncio.run(main_async(ns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
