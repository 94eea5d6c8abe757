"""Silero VAD for every call of the process in one ONNX run per tick, each call's state its own.

The ``silero_vad.onnx`` inside pipecat's wheel takes a batch: ``input [B, 64 + 512]`` (each
row's window after that row's last 64 samples), ``state [2, B, 128]``, ``sr``. Each row's
recurrent state and context stay with its call (:class:`SileroRow`); :func:`score_rows` stacks
the rows that have a window, runs the session once and hands each row its probability and new
state. Measured per 512-sample window per call: 171-189 us alone, 85-88 at 8 calls, 76-87 at 32
(``docs/measurements.md#silero-batched``).

:class:`SileroBatcher` is the asyncio side: a call's VAD awaits its window's probability; the
first window schedules one run at the end of the event loop's current pass (``call_soon``),
which scores every window queued in that pass. No delay is added: calls whose frames the loop
handles together (a busy loop wakes with many sockets readable) share a run, so batches grow
with load. Waiting 3 ms to gather more cost ~350 us of CPU per chunk at one call (the extra
wake-up) and gained nothing at 20 and 50 calls (``python -m bench.probes.silero_batch``).

:class:`BatchedSileroVADAnalyzer` is pipecat's Silero analyzer with its windows scored that
way and everything else (thresholds, volume, state machine, periodic model reset) pipecat's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ai_pipeline.agent_config import VadConfig
from ai_pipeline.engines.vad import SharedSileroVADAnalyzer, samples_of

if TYPE_CHECKING:
    import onnxruntime  # type: ignore[import-untyped]

WINDOW_SAMPLES = 512
"""Silero's window at 16 kHz (32 ms)."""
CONTEXT_SAMPLES = 64
STATE_SHAPE = (2, 128)
RATE_HZ = 16000
BATCH_WAIT_S = 0.0
"""How long the first window waits for other calls' windows; 0: the end of the loop's pass."""
MAX_BATCH = 256
"""Rows per ONNX run; more are split into further runs (bounded memory per run)."""


@dataclass
class SileroRow:
    """One call's place in the batch: its recurrent state and last samples."""

    state: np.ndarray = field(default_factory=lambda: np.zeros(STATE_SHAPE, np.float32))
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT_SAMPLES, np.float32))

    def reset_states(self) -> None:
        """What pipecat's ``SileroOnnxModel.reset_states`` does, for one row."""
        self.state = np.zeros(STATE_SHAPE, np.float32)
        self.context = np.zeros(CONTEXT_SAMPLES, np.float32)


def score_rows(
    session: onnxruntime.InferenceSession,
    rows: Sequence[SileroRow],
    windows: Sequence[np.ndarray],
) -> list[float]:
    """Speech probability of each row's window (float32, 512 samples); advances each row."""
    probs: list[float] = []
    for start in range(0, len(rows), MAX_BATCH):
        part = rows[start : start + MAX_BATCH]
        inputs = np.stack(
            [np.concatenate((r.context, w)) for r, w in zip(part, windows[start:], strict=False)]
        )
        state = np.stack([r.state for r in part], axis=1)
        out, new_state = session.run(
            None, {"input": inputs, "state": state, "sr": np.array(RATE_HZ, dtype=np.int64)}
        )
        for i, row in enumerate(part):
            row.state = np.ascontiguousarray(new_state[:, i, :])
            row.context = inputs[i, -CONTEXT_SAMPLES:].copy()
            probs.append(float(out[i, 0]))
    return probs


class SileroBatcher:
    """Scores the windows of all calls of one process together; one per process and loop."""

    def __init__(self, session: onnxruntime.InferenceSession, wait_s: float = BATCH_WAIT_S) -> None:
        self._session = session
        self._wait_s = wait_s
        self._pending: list[tuple[SileroRow, np.ndarray, asyncio.Future[float]]] = []
        self.runs = 0
        self.windows = 0

    async def probability(self, row: SileroRow, window: np.ndarray) -> float:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[float] = loop.create_future()
        if not self._pending:
            if self._wait_s > 0:
                loop.call_later(self._wait_s, self._run)
            else:
                loop.call_soon(self._run)
        self._pending.append((row, window, future))
        return await future

    def _run(self) -> None:
        pending, self._pending = self._pending, []
        live = [p for p in pending if not p[2].cancelled()]  # a call that ended meanwhile
        if not live:
            return
        try:
            probs = score_rows(self._session, [p[0] for p in live], [p[1] for p in live])
        except Exception as exc:  # onnxruntime raises its own types; every waiter hears it
            for _, _, future in live:
                future.set_exception(exc)
            return
        self.runs += 1
        self.windows += len(live)
        for (_, _, future), prob in zip(live, probs, strict=True):
            future.set_result(prob)


class BatchedSileroVADAnalyzer(SharedSileroVADAnalyzer):
    """pipecat's Silero analyzer whose windows are scored by the process's :class:`SileroBatcher`.

    Everything else is :class:`SharedSileroVADAnalyzer`'s: ``analyze_audio`` prepares each
    window the new audio completes (its volume, and its score where the volume lets it be
    speech, through the batcher), then runs pipecat's own analysis on those.
    """

    def __init__(
        self, batcher: SileroBatcher, session: onnxruntime.InferenceSession, vad: VadConfig
    ):
        super().__init__(session, vad, sample_rate_hz=RATE_HZ)
        self._batcher = batcher
        self._session = session
        self._model = SileroRow()  # type: ignore[assignment]  # reset_states() is what pipecat calls

    @property
    def _row(self) -> SileroRow:
        row: SileroRow = self._model  # type: ignore[assignment]
        return row

    def _score_now(self, window: bytes) -> float:
        return score_rows(self._session, [self._row], [samples_of(window)])[0]

    async def _score(self, window: bytes) -> float:
        return await self._batcher.probability(self._row, samples_of(window))
