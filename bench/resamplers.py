"""The resamplers a user would pick for 8 kHz <-> 16 kHz telephony audio, behind one interface.

Each candidate is a factory ``(in_rate_hz, out_rate_hz) -> Resampler``; a resampler takes one
20 ms PCM16 frame at a time, as a media server sees them, and returns whatever output it has.
Per-frame candidates (soxr one-shot, numpy interpolation) are stateless on purpose: that is how
they get used, and the clicks at frame joins are what the benchmark shows.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import soxr


class Resampler(Protocol):
    def process(self, pcm16: bytes) -> bytes: ...


ResamplerFactory = Callable[[int, int], Resampler]


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    note: str
    factory: ResamplerFactory | None
    """``None`` when the candidate cannot run here; ``note`` then says why."""


class SoxrStream:
    """soxr's ``ResampleStream``: stateful, the filter history carries across frames."""

    def __init__(self, in_rate_hz: int, out_rate_hz: int, quality: str = "HQ") -> None:
        self._stream = soxr.ResampleStream(
            in_rate_hz, out_rate_hz, 1, dtype="int16", quality=quality
        )

    def process(self, pcm16: bytes) -> bytes:
        out = self._stream.resample_chunk(np.frombuffer(pcm16, dtype=np.int16))
        return bytes(np.asarray(out, dtype=np.int16).tobytes())


class SoxrOneShot:
    """``soxr.resample`` on every frame alone: no history, so each frame's edges ring."""

    def __init__(self, in_rate_hz: int, out_rate_hz: int) -> None:
        self._in_rate_hz = in_rate_hz
        self._out_rate_hz = out_rate_hz

    def process(self, pcm16: bytes) -> bytes:
        samples = np.frombuffer(pcm16, dtype=np.int16)
        out = soxr.resample(samples, self._in_rate_hz, self._out_rate_hz, quality="HQ")
        return bytes(np.asarray(out, dtype=np.int16).tobytes())


class AudioopRatecv:
    """The stdlib's ``audioop.ratecv`` (removed in 3.13; ``audioop-lts`` brings it back)."""

    def __init__(self, in_rate_hz: int, out_rate_hz: int) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._audioop: Any = importlib.import_module("audioop")
        self._in_rate_hz = in_rate_hz
        self._out_rate_hz = out_rate_hz
        self._state: Any = None

    def process(self, pcm16: bytes) -> bytes:
        out, self._state = self._audioop.ratecv(
            pcm16, 2, 1, self._in_rate_hz, self._out_rate_hz, self._state
        )
        return bytes(out)


class NumpyLinear:
    """``np.interp`` over each frame alone: what a quick hand-written resampler does."""

    def __init__(self, in_rate_hz: int, out_rate_hz: int) -> None:
        self._ratio = out_rate_hz / in_rate_hz

    def process(self, pcm16: bytes) -> bytes:
        samples = np.frombuffer(pcm16, dtype=np.int16).astype(np.float64)
        n_out = round(samples.size * self._ratio)
        positions = np.arange(n_out) / self._ratio
        out = np.interp(positions, np.arange(samples.size), samples)
        return bytes(np.clip(np.round(out), -32768, 32767).astype(np.int16).tobytes())


class PipecatStream:
    """pipecat's stream resampler (soxr VHQ with a 0.2 s idle reset) as its transports use it.

    Its ``resample`` is a coroutine that never suspends; it is driven to completion directly so
    the figure is the resampler's cost, not an event loop's.
    """

    def __init__(self, in_rate_hz: int, out_rate_hz: int) -> None:
        utils = importlib.import_module("pipecat.audio.utils")
        self._resampler = utils.create_stream_resampler()
        self._in_rate_hz = in_rate_hz
        self._out_rate_hz = out_rate_hz

    def process(self, pcm16: bytes) -> bytes:
        coro = self._resampler.resample(pcm16, self._in_rate_hz, self._out_rate_hz)
        return bytes(_run_to_completion(coro))


def _run_to_completion(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("coroutine suspended; it needs an event loop")


def callbridge_candidate() -> Candidate:
    """The media core's ``media.resample.StreamResampler``, or a 'missing' row until it lands."""
    try:
        module = importlib.import_module("media.resample")
        factory = module.StreamResampler
    except (ImportError, AttributeError) as exc:
        return Candidate("callbridge", f"missing: media.resample.StreamResampler ({exc})", None)
    return Candidate("callbridge", "media.resample.StreamResampler", factory)


def candidates() -> list[Candidate]:
    """Every candidate, ours first; rows that cannot run here carry ``factory=None``."""
    rows = [callbridge_candidate()]
    rows.append(Candidate("soxr-stream-hq", "soxr.ResampleStream quality=HQ", SoxrStream))
    rows.append(Candidate("soxr-oneshot", "soxr.resample per 20 ms frame, HQ", SoxrOneShot))
    try:
        AudioopRatecv(8000, 16000)
        rows.append(Candidate("audioop-ratecv", "audioop.ratecv with state", AudioopRatecv))
    except ImportError as exc:
        rows.append(Candidate("audioop-ratecv", f"missing: {exc}", None))
    try:
        PipecatStream(8000, 16000)
        rows.append(
            Candidate("pipecat-stream", "pipecat create_stream_resampler (soxr VHQ)", PipecatStream)
        )
    except ImportError as exc:
        rows.append(Candidate("pipecat-stream", f"missing: {exc}", None))
    rows.append(Candidate("numpy-linear", "np.interp per 20 ms frame", NumpyLinear))
    return rows
