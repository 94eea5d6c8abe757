"""Silero VAD for many calls in one process: what one shared ONNX session and running inline save.

``ai_pipeline/engines/vad.py`` gives every call its own Silero state over one shared
``InferenceSession`` and runs each window inline on the event loop. This probe measures the
three ways against each other, N calls in one process, CPU time per 20 ms chunk per call:

- ``separate+thread``: pipecat's stock ``SileroVADAnalyzer`` per call (its own session, ~11 MB)
  through its ``analyze_audio``, which hands every chunk to the analyzer's worker thread: what
  pipecat's pipelines run;
- ``separate``: the same analyzers, each chunk analysed inline;
- ``shared+thread``: :class:`~ai_pipeline.engines.vad.SharedSileroVADAnalyzer` (one session,
  per-call state) through the worker-thread hand-off;
- ``shared``: the same, inline: what the offline agent runs.

All three run the calls' chunks interleaved, as a server's calls arrive. Run:
``python -m bench.probes.silero_sessions --calls 50 --seconds 4``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer

from ai_pipeline.agent_config import VadConfig
from ai_pipeline.engines.models import ModelStore
from ai_pipeline.engines.vad import SharedSileroVADAnalyzer
from ai_pipeline.turnbench import load_fixture

RATE_HZ = 16000
CHUNK_BYTES = RATE_HZ * 2 // 50  # 20 ms, as the agent link delivers it


def analyzers(mode: str, calls: int) -> list[VADAnalyzer]:
    if mode.startswith("separate"):
        vads: list[VADAnalyzer] = [SileroVADAnalyzer() for _ in range(calls)]
    else:
        session = ModelStore().silero_session()
        vads = [SharedSileroVADAnalyzer(session, VadConfig()) for _ in range(calls)]
    for vad in vads:
        vad.set_sample_rate(RATE_HZ)  # what a pipeline's StartFrame does
    return vads


def chunks(seconds: float) -> list[bytes]:
    speech = load_fixture("billing_question.wav")
    needed = int(seconds * RATE_HZ * 2)
    audio = (speech * (needed // len(speech) + 1))[:needed]
    return [audio[i : i + CHUNK_BYTES] for i in range(0, needed - CHUNK_BYTES + 1, CHUNK_BYTES)]


async def cpu_us_per_chunk(mode: str, calls: int, seconds: float) -> float:
    vads = analyzers(mode, calls)
    audio = chunks(seconds)
    threaded = mode.endswith("+thread")

    async def one_call(vad: VADAnalyzer) -> None:
        for chunk in audio:
            if threaded:  # the base class's hand-off, whatever the subclass overrides
                await VADAnalyzer.analyze_audio(vad, chunk)
            else:
                vad._run_analyzer(chunk)
            await asyncio.sleep(0)  # let the other calls' chunks in between, as a server would

    await one_call(vads[0])  # warm-up: first runs allocate
    started = time.process_time()
    await asyncio.gather(*(one_call(v) for v in vads))
    return (time.process_time() - started) / (calls * len(audio)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per call")
    ns = parser.parse_args()
    from loguru import logger

    logger.remove()
    for mode in ("separate+thread", "separate", "shared+thread", "shared"):
        us = asyncio.run(cpu_us_per_chunk(mode, ns.calls, ns.seconds))
        print(f"{mode:14s} {ns.calls} calls: {us:6.0f} us of CPU per 20 ms chunk per call")


if __name__ == "__main__":
    main()
