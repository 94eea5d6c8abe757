"""The ``turn`` bench's agent: the real offline agent (:class:`ai_pipeline.pipeline.CallAgent`,
models preloaded) behind the real agent-link server, with a stopwatch on each stage.

For every call it records, with ``time.monotonic()`` (one clock for every process on the host,
so the caller's end-of-speech time can be compared with these), when each stage produced its
first output of a burst: VAD stop, STT final transcript, first LLM output (text or tool call),
first TTS audio, and first audio frame written to the link; and each tool call's round trip
through the media core and the control plane. A burst starts after
:data:`BURST_GAP_S` without that output. One JSON line per call goes to ``--out`` when the call
ends, with the call's CPU cost to the agent process.

Run: ``python -m bench.turn_agent --port 8767 --out turn-agent.jsonl``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from pipecat.frames.frames import (
    FunctionCallInProgressFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed

from ai_pipeline.engines.models import ModelStore
from ai_pipeline.link import AgentLink
from ai_pipeline.pipeline import CallAgent
from ai_pipeline.server import AgentServer
from proto.messages import Audio, CallStart, FunctionCall, FunctionCallResult, LinkFrame

BURST_GAP_S = 0.3
STAGES: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("vad_stop", (VADUserStoppedSpeakingFrame,)),
    ("stt_final", (TranscriptionFrame,)),
    ("llm_first", (LLMTextFrame, FunctionCallInProgressFrame)),
    ("tts_first_audio", (TTSAudioRawFrame,)),
)


class StageClock(BaseObserver):
    """Start times of each stage's bursts of output (each frame counted once, at first push).

    pipecat calls observers from a queue, late by however busy the loop is, so the time of a
    push is the frame's own pipeline-clock stamp (``FramePushed.timestamp``, monotonic ns since
    the pipeline started), moved onto ``time.monotonic()`` by the smallest seen difference
    between the two clocks (the least-delayed observation).
    """

    def __init__(self) -> None:
        super().__init__()
        self._bursts: dict[str, list[float]] = {name: [] for name, _ in STAGES}
        self._bursts["link_first_audio"] = []
        self._last: dict[str, float] = {}
        self._seen: set[int] = set()
        self._pipeline_start_ns = float("inf")
        self._transcripts: list[tuple[float, str]] = []  # pipeline seconds, what Whisper heard

    def mark(self, stage: str, at_s: float) -> None:
        if at_s - self._last.get(stage, -1e9) > BURST_GAP_S:
            self._bursts[stage].append(at_s)
        self._last[stage] = at_s

    async def on_push_frame(self, data: FramePushed) -> None:
        frame, stamp_ns = data.frame, data.timestamp
        if stamp_ns <= 0 or frame.id in self._seen:
            return
        self._pipeline_start_ns = min(self._pipeline_start_ns, time.monotonic_ns() - stamp_ns)
        for name, kinds in STAGES:
            if isinstance(frame, kinds):
                self._seen.add(frame.id)
                self.mark(name, stamp_ns / 1e9)  # pipeline seconds until starts() converts
        if isinstance(frame, TranscriptionFrame):
            self._transcripts.append((stamp_ns / 1e9, frame.text))

    def starts(self) -> dict[str, list[float]]:
        """Every burst start on the ``time.monotonic()`` clock."""
        offset_s = self._pipeline_start_ns / 1e9
        out = {
            name: [t + offset_s for t in times]
            for name, times in self._bursts.items()
            if name != "link_first_audio"
        }
        out["link_first_audio"] = self._bursts["link_first_audio"]
        return out

    def transcripts(self) -> list[tuple[float, str]]:
        """What the STT heard, each at its ``time.monotonic()`` time."""
        offset_s = self._pipeline_start_ns / 1e9
        return [(t + offset_s, text) for t, text in self._transcripts]


class TimedLink:
    """The call's link, timing the agent audio written to it and each tool call's round trip
    (``FunctionCall`` written -> its ``FunctionCallResult`` read: media core, control plane and
    whatever runs the tool), with the result's ``is_error``."""

    def __init__(self, link: AgentLink, clock: StageClock) -> None:
        self._link = link
        self._clock = clock
        self.tool_calls: dict[str, dict[str, Any]] = {}

    async def recv(self) -> LinkFrame:
        frame = await self._link.recv()
        if isinstance(frame, FunctionCallResult) and frame.tool_call_id in self.tool_calls:
            call = self.tool_calls[frame.tool_call_id]
            call.update(answered=time.monotonic(), is_error=frame.is_error, result=frame.result)
        return frame

    async def send(self, frame: LinkFrame) -> None:
        if isinstance(frame, Audio):  # stamped as the write starts: the core may read it first
            self._clock.mark("link_first_audio", time.monotonic())
        elif isinstance(frame, FunctionCall):
            self.tool_calls[frame.tool_call_id] = {"name": frame.name, "sent": time.monotonic()}
        await self._link.send(frame)


def make_handler(models: ModelStore, out: Path) -> Any:
    async def handler(start: CallStart, link: AgentLink) -> None:
        clock = StageClock()
        cpu = time.process_time()
        record: dict[str, Any] = {"call_id": start.call_id, "started": time.monotonic()}
        timed = TimedLink(link, clock)
        try:
            await CallAgent(start, timed, models, os.environ, observers=[clock]).run()
        finally:
            record.update(ended=time.monotonic(), cpu_s=time.process_time() - cpu, **clock.starts())
            record["tool_calls"] = list(timed.tool_calls.values())
            record["transcripts"] = clock.transcripts()
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")

    return handler


async def main_async(host: str, port: int, out: Path) -> None:
    models = ModelStore()
    await asyncio.to_thread(models.preload_offline)  # before listening: the bench waits on it
    server = await AgentServer(make_handler(models, out)).start(host, port)
    async with server:
        await asyncio.Future()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    ns = parser.parse_args()
    from loguru import logger

    logger.remove()  # pipecat logs every frame hop at DEBUG
    asyncio.run(main_async(ns.host, ns.port, ns.out))


if __name__ == "__main__":
    main()
