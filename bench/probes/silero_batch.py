"""Silero batched across calls: what one ONNX run per tick for every call saves.

Two figures, CPU time, one thread:

- :func:`~ai_pipeline.engines.vad_batch.score_rows` alone: us per 512-sample window per call
  when B calls' windows go through one ``InferenceSession.run``;
- whole analyzers (pipecat's state machine and volume included), N calls fed a 20 ms chunk each
  per tick: :class:`~ai_pipeline.engines.vad.SharedSileroVADAnalyzer` (one run per call and
  window) against :class:`~ai_pipeline.engines.vad_batch.BatchedSileroVADAnalyzer` (one run per
  tick), and the batched one waiting ``--wait-ms`` to gather windows.

Run: ``python -m bench.probes.silero_batch --calls 1,20,50 --rows 1,8,32``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np
from pipecat.audio.vad.vad_analyzer import VADAnalyzer

from ai_pipeline.agent_config import VadConfig
from ai_pipeline.engines.models import ModelStore
from ai_pipeline.engines.vad import SharedSileroVADAnalyzer
from ai_pipeline.engines.vad_batch import (
    BatchedSileroVADAnalyzer,
    SileroBatcher,
    SileroRow,
    score_rows,
)

RATE_HZ = 16000
CHUNK_SAMPLES = 320


def rows_us(models: ModelStore, batch: int, runs: int = 200) -> float:
    session = models.silero_session()
    window = np.random.default_rng(1).normal(0, 0.03, 512).astype(np.float32)
    rows = [SileroRow() for _ in range(batch)]
    started = time.process_time()
    for _ in range(runs):
        score_rows(session, rows, [window] * batch)
    return (time.process_time() - started) / runs / batch * 1e6


async def analyzers_us(
    models: ModelStore, kind: str, calls: int, ticks: int, wait_s: float
) -> float:
    session = models.silero_session()
    vads: list[VADAnalyzer]
    if kind == "shared":
        vads = [
            SharedSileroVADAnalyzer(session, VadConfig(), sample_rate_hz=RATE_HZ)
            for _ in range(calls)
        ]
    else:
        batcher = SileroBatcher(session, wait_s)
        vads = [BatchedSileroVADAnalyzer(batcher, session, VadConfig()) for _ in range(calls)]
    for vad in vads:
        vad.set_sample_rate(RATE_HZ)
    rng = np.random.default_rng(2)
    chunks = [rng.normal(0, 1000, CHUNK_SAMPLES).astype(np.int16).tobytes() for _ in range(calls)]
    started = time.process_time()
    for _ in range(ticks):
        await asyncio.gather(*(v.analyze_audio(c) for v, c in zip(vads, chunks, strict=True)))
    return (time.process_time() - started) / ticks / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", default="1,20,50")
    parser.add_argument("--rows", default="1,8,32")
    parser.add_argument("--ticks", type=int, default=250, help="20 ms chunks per call")
    parser.add_argument("--wait-ms", type=float, default=3.0)
    ns = parser.parse_args()
    from loguru import logger

    logger.remove()  # pipecat logs every analyzer's parameters at DEBUG
    models = ModelStore()
    for batch in (int(b) for b in ns.rows.split(",")):
        us = rows_us(models, batch)
        print(f"score_rows, {batch:3d} rows per run: {us:5.0f} us per window per call")
    ways = [("shared", 0.0), ("batched", 0.0), ("batched", ns.wait_ms / 1000)]
    for calls in (int(c) for c in ns.calls.split(",")):
        for kind, wait_s in ways:
            us = asyncio.run(analyzers_us(models, kind, calls, ns.ticks, wait_s))
            label = kind if kind == "shared" else f"batched, wait {wait_s * 1000:g} ms"
            print(f"{calls:3d} calls, {label:20s}: {us:5.0f} us per 20 ms chunk per call")


if __name__ == "__main__":
    main()
