"""Many calls' resampling in one numpy pass (issue 15: work batched across calls per wake-up).

A process serving N calls resamples N chunks per 20 ms in each direction; one
:class:`media.resample.StreamResampler` call per chunk is about a dozen numpy calls, ~10 us, most
of it numpy's per-call overhead, not arithmetic. A :class:`ResampleBatch` takes the chunks that
arrive in one wake-up (every call the shared reader or the agent link's reader serves at once)
and resamples each group of streams sharing a rate pair, a chunk length and a filter phase as
the rows of one matrix: their histories and chunks are joined into one array, and one matrix
product computes every output (~1 us per chunk from ten calls on).

The product is blocked: a frame's outputs, B at a time, are the same linear map of a window of
input that moves by B*M/L samples per block, so the matrix is one small banded block
(:func:`plan`), and every call's blocks are its rows. Each call keeps its own state (the
resampler's history and phase, read before and written back after), and the output is the
per-call path's bit for bit: taps and samples are integers held in float64, so every product
and every partial sum is exact and the order BLAS adds them in cannot change a sum (see
:mod:`media.resample`). Pure and clock-free; the Trio layer opens a batch per wake-up
(:func:`media.tick.batching`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from math import gcd

import numpy as np
import numpy.typing as npt

from media.resample import StreamResampler, fixed_to_pcm16, polyphase_bank

log = logging.getLogger(__name__)

BLOCK_OUTPUTS = 32
"""Outputs per block, about: shorter blocks waste fewer multiplications on the band's zeros,
longer ones make fewer, larger products (16-40 measured alike here, a whole frame 2x slower)."""
MAX_PRODUCT_MACS = 2**17
"""Rows of one matrix product, at most this many multiply-adds: OpenBLAS runs a product over
~2**18 on every thread it has, and on a media core pinned to one CPU its threads' hand-offs cost
far more than the arithmetic (measured: 10x)."""

Then = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Plan:
    """How one chunk length and phase of one rate pair is computed blockwise."""

    first: int  # index in history+chunk of the first block's first input sample
    shift: int  # input samples between blocks
    blocks: int
    block: npt.NDArray[np.float64]  # [width, outputs per block]: integer taps, zeros off the band
    n_out: int
    next_t: int  # the resampler's phase after the chunk

    def apply(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """rows[N, history + chunk] -> filter sums [N, n_out] (tap units)."""
        n_rows = rows.shape[0]
        width, per_block = self.block.shape
        windows = np.lib.stride_tricks.as_strided(
            rows[:, self.first :],
            (n_rows, self.blocks, width),
            (rows.strides[0], self.shift * rows.itemsize, rows.itemsize),
            writeable=False,
        )
        flat = np.ascontiguousarray(windows).reshape(n_rows * self.blocks, width)
        out = np.empty((flat.shape[0], per_block), dtype=np.float64)
        step = max(1, MAX_PRODUCT_MACS // (width * per_block))
        for start in range(0, flat.shape[0], step):
            np.matmul(flat[start : start + step], self.block, out=out[start : start + step])
        return out.reshape(n_rows, self.n_out)


@lru_cache(maxsize=64)
def plan(in_rate_hz: int, out_rate_hz: int, n_in: int, next_t: int) -> Plan | None:
    """The blocked computation of an ``n_in``-sample chunk at phase ``next_t``; None where no
    block size fits (a chunk with no output, or lengths whose outputs do not divide into blocks
    of whole phase cycles): those chunks take the per-call path."""
    up, down, bank = polyphase_bank(in_rate_hz, out_rate_hz)
    taps = bank.shape[1]
    t = np.arange(next_t, n_in * up, down)  # each output's upsampled position (resample.py)
    per_block = _block_outputs(t.size, up // gcd(up, down))
    if per_block is None:
        return None
    first = int(t[0]) // up
    starts = t[:per_block] // up - first  # each output's window, from the block's start
    block = np.zeros((int(starts[-1]) + taps, per_block), dtype=np.float64)
    for j, (start, phase) in enumerate(zip(starts, t[:per_block] % up, strict=True)):
        block[start : start + taps, j] = bank[phase]
    return Plan(
        first=first,
        shift=per_block * down // up,
        blocks=t.size // per_block,
        block=block,
        n_out=int(t.size),
        next_t=int(t[-1]) + down - n_in * up,
    )


def _block_outputs(n_out: int, period: int) -> int | None:
    """Outputs per block: a whole number of phase cycles (so every block has the same taps)
    that divides the chunk's outputs, closest to :data:`BLOCK_OUTPUTS`."""
    sizes = [b for b in range(period, n_out + 1, period) if n_out % b == 0]
    if not sizes:
        return None
    return min(sizes, key=lambda b: (abs(b - BLOCK_OUTPUTS), -b))


class ResampleBatch:
    """Chunks of many streams, resampled together by :meth:`run`; each result goes to the
    callback given with its chunk. A stream's chunks keep their order (a second chunk of one
    stream goes in a second pass, after the first's callback)."""

    def __init__(self) -> None:
        self.passes = 0  # matrix passes run (for tests and benchmarks)
        self._items: list[tuple[StreamResampler, bytes, Then]] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, resampler: StreamResampler, pcm16: bytes, then: Then) -> None:
        self._items.append((resampler, pcm16, then))

    def run(self) -> None:
        """Resample everything added and call back, in the order added within each pass.
        A callback's exception is logged and ends nothing else (it is one call's bug)."""
        items, self._items = self._items, []
        while items:
            items = self._run_pass(items)

    def _run_pass(
        self, items: list[tuple[StreamResampler, bytes, Then]]
    ) -> list[tuple[StreamResampler, bytes, Then]]:
        """One chunk per stream; returns the chunks left for the next pass."""
        seen: set[int] = set()
        now: list[tuple[StreamResampler, bytes, Then]] = []
        later: list[tuple[StreamResampler, bytes, Then]] = []
        groups: dict[tuple[int, int, int, int], list[int]] = {}
        for item in items:
            resampler = item[0]
            if id(resampler) in seen:
                later.append(item)
                continue
            seen.add(id(resampler))
            in_hz, out_hz = resampler.rates_hz
            key = (in_hz, out_hz, len(item[1]) // 2, resampler.state[1])
            groups.setdefault(key, []).append(len(now))
            now.append(item)
        outs: list[bytes] = [b""] * len(now)
        for key, at in groups.items():
            self._run_group(key, [now[i] for i in at], at, outs)
        for (_, _, then), out in zip(now, outs, strict=True):
            try:
                then(out)
            except Exception:  # one call's bug must not stop every call's audio
                log.exception("resampled chunk's callback failed")
        return later

    def _run_group(
        self,
        key: tuple[int, int, int, int],
        items: list[tuple[StreamResampler, bytes, Then]],
        at: list[int],
        outs: list[bytes],
    ) -> None:
        """Streams of one rate pair, chunk length and phase: one pass, or each on its own."""
        found = None if items[0][0].passthrough else plan(*key)
        if found is None:
            for (resampler, pcm16, _), i in zip(items, at, strict=True):
                outs[i] = resampler.process(pcm16)
            return
        self.passes += 1
        parts: list[bytes] = []
        for resampler, pcm16, _ in items:
            parts += (resampler.state[0], pcm16)
        joined = b"".join(parts)
        row_bytes = len(joined) // len(items)
        chunk_bytes = len(items[0][1])
        rows = np.frombuffer(joined, dtype="<i2").reshape(len(items), -1).astype(np.float64)
        out = fixed_to_pcm16(found.apply(rows))
        out_bytes = 2 * found.n_out
        for k, ((resampler, _, _), i) in enumerate(zip(items, at, strict=True)):
            row = k * row_bytes
            resampler.set_state(joined[row + chunk_bytes : row + row_bytes], found.next_t)
            outs[i] = out[k * out_bytes : (k + 1) * out_bytes]
