"""Silero VAD with one ONNX session shared by every call in the process.

pipecat's ``SileroVADAnalyzer`` opens its own ``InferenceSession`` per instance (~11 MB and a
thread per call). ``InferenceSession.run`` is thread-safe; the recurrent state and context stay
in the per-call :class:`SileroOnnxModel`.

It also runs inline on the event loop instead of handing every 20 ms chunk to a per-call
worker thread. ``python -m bench.probes.silero_sessions --calls 50`` measured, per 20 ms chunk
per call at 50 calls: pipecat's stock analyzers 584-590 us of CPU, separate sessions inline
322-371, one shared session through the thread hand-off 324-374, shared and inline 167-240
(``docs/measurements.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState

from ai_pipeline.agent_config import VadConfig

if TYPE_CHECKING:
    import onnxruntime  # type: ignore[import-untyped]


def _per_call_model(session: onnxruntime.InferenceSession) -> SileroOnnxModel:
    # SileroOnnxModel.__init__ would open a session; everything else about it is per-call state.
    model = SileroOnnxModel.__new__(SileroOnnxModel)
    model.session = session
    model.sample_rates = [8000, 16000]
    model.reset_states()  # type: ignore[no-untyped-call]
    return model


class SharedSileroVADAnalyzer(SileroVADAnalyzer):
    """``SileroVADAnalyzer`` over a shared session (see the module docstring)."""

    def __init__(
        self,
        session: onnxruntime.InferenceSession,
        vad: VadConfig,
        *,
        sample_rate_hz: int | None = None,
    ) -> None:
        params = VADParams(
            confidence=vad.confidence,
            start_secs=vad.start_secs,
            stop_secs=vad.stop_secs,
            min_volume=vad.min_volume,
        )
        # Skip SileroVADAnalyzer.__init__ (it loads a model); set up what it would have set.
        VADAnalyzer.__init__(self, sample_rate=sample_rate_hz, params=params)
        self._model = _per_call_model(session)
        self._windows_since_reset = 0
        self._low_confidence_windows = 0

    async def analyze_audio(self, buffer: bytes) -> VADState:
        """Inline: cheaper than the base class's thread hand-off per chunk (see module doc)."""
        state: VADState = self._run_analyzer(buffer)
        return state
