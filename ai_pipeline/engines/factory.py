"""Turn an :class:`~ai_pipeline.agent_config.AgentConfig` into the call's pipecat services.

Offline engines get their shared models from the :class:`ModelStore`; network engines are
pipecat's own services, imported only when configured (their SDKs are optional extras) and given
their key from the environment variable the config names. A missing key or SDK is an
:class:`EngineError`, which ends that call with a clear error, never the process.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipecat.services.llm_service import LLMService
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService

from ai_pipeline.agent_config import AgentConfig, EngineConfig
from ai_pipeline.engines.flite_tts import FLITE_VOICES, FliteTTSService, flite_binary
from ai_pipeline.engines.hearing import CallerHearing
from ai_pipeline.engines.intent_router import IntentRouterLLMService
from ai_pipeline.engines.models import ModelLoadError, ModelStore
from ai_pipeline.engines.stt import WhisperPackagedSTTService
from ai_pipeline.engines.tts import PiperPackagedTTSService
from ai_pipeline.tools import JOIN_CONFERENCE


class EngineError(RuntimeError):
    """A configured engine cannot be built (missing key, SDK or model)."""


@dataclass(frozen=True, slots=True)
class CloudService:
    """Where a network engine lives in pipecat, and which env var holds its key by default."""

    module: str
    cls: str
    key_env: str
    extra: str


CLOUD_STT: Mapping[str, CloudService] = {
    "deepgram": CloudService(
        "pipecat.services.deepgram.stt", "DeepgramSTTService", "DEEPGRAM_API_KEY", "deepgram"
    ),
    "openai": CloudService(
        "pipecat.services.openai.stt", "OpenAISTTService", "OPENAI_API_KEY", "openai"
    ),
}
CLOUD_TTS: Mapping[str, CloudService] = {
    "cartesia": CloudService(
        "pipecat.services.cartesia.tts", "CartesiaTTSService", "CARTESIA_API_KEY", "cartesia"
    ),
    "elevenlabs": CloudService(
        "pipecat.services.elevenlabs.tts",
        "ElevenLabsTTSService",
        "ELEVENLABS_API_KEY",
        "elevenlabs",
    ),
    "openai": CloudService(
        "pipecat.services.openai.tts", "OpenAITTSService", "OPENAI_API_KEY", "openai"
    ),
}


def api_key_from_env(engine: EngineConfig, default_env: str, env: Mapping[str, str]) -> str:
    """The key named by ``api_key_env`` (or the service's usual variable); never logged."""
    var = engine.option_str("api_key_env", default_env) or default_env
    key = env.get(var, "")
    if not key:
        raise EngineError(f"{engine.name}: environment variable {var} is not set")
    return key


def _cloud_class(spec: CloudService) -> Any:
    try:
        module = importlib.import_module(spec.module)
    except Exception as exc:  # pipecat raises its own Exception when an SDK extra is missing
        raise EngineError(f"{spec.cls} needs pipecat-ai[{spec.extra}] installed: {exc}") from exc
    return getattr(module, spec.cls)


def build_stt(
    cfg: AgentConfig,
    models: ModelStore,
    env: Mapping[str, str],
    hearing: CallerHearing | None = None,
) -> STTService:
    if cfg.stt.name == "whisper-tiny-en":
        if cfg.language.split("-")[0] != "en":  # "en", "en-US", "en-GB"...
            raise EngineError(f"whisper-tiny-en transcribes English only, not {cfg.language!r}")
        return WhisperPackagedSTTService(whisper=_load(models.whisper_window), hearing=hearing)
    spec = CLOUD_STT[cfg.stt.name]
    cls = _cloud_class(spec)
    key = api_key_from_env(cfg.stt, spec.key_env, env)
    model = cfg.stt.option_str("model")
    settings = cls.Settings(model=model) if model else None
    service: STTService = cls(api_key=key, settings=settings)
    return service


def build_tts(cfg: AgentConfig, models: ModelStore, env: Mapping[str, str]) -> TTSService:
    if cfg.tts.name == "piper":
        if cfg.voice not in (None, "en_US-joe-medium"):
            raise EngineError(f"piper: only the packaged en_US-joe-medium voice, not {cfg.voice}")
        return PiperPackagedTTSService(voice=_load(models.piper_voice), cache=models.speech_cache())
    if cfg.tts.name == "flite":
        return _build_flite(cfg)
    spec = CLOUD_TTS[cfg.tts.name]
    cls = _cloud_class(spec)
    key = api_key_from_env(cfg.tts, spec.key_env, env)
    voice = cfg.tts.option_str("voice", cfg.voice)
    model = cfg.tts.option_str("model")
    delta: dict[str, Any] = {k: v for k, v in (("voice", voice), ("model", model)) if v}
    settings = cls.Settings(**delta) if delta else None
    service: TTSService = cls(api_key=key, settings=settings)
    return service


def _build_flite(cfg: AgentConfig) -> TTSService:
    binary = flite_binary()
    if binary is None:
        raise EngineError("flite is not installed (Debian package flite)")
    voice = cfg.tts.option_str("voice", cfg.voice or "slt") or "slt"
    if voice not in FLITE_VOICES:
        raise EngineError(f"flite: unknown voice {voice!r}; known: {sorted(FLITE_VOICES)}")
    return FliteTTSService(voice=voice, binary=binary)


def build_llm(
    cfg: AgentConfig,
    models: ModelStore,
    env: Mapping[str, str],
    hearing: CallerHearing | None = None,
) -> LLMService:
    if cfg.llm.name == "intent-router":
        # With no default conference the router cannot name one; a real LLM can.
        no_conference = frozenset() if cfg.default_conference_id else frozenset({JOIN_CONFERENCE})
        knowledge = _load(lambda: models.knowledge_index(cfg.knowledge)) if cfg.knowledge else None
        return IntentRouterLLMService(
            _load(models.intent_router),
            system_instruction=cfg.prompt,
            unroutable_tools=no_conference,
            knowledge=knowledge,
            hearing=hearing,
        )
    from pipecat.services.openai.llm import OpenAILLMService

    base_url = cfg.llm.option_str("base_url")
    model = cfg.llm.option_str("model", "gpt-4.1-mini") or "gpt-4.1-mini"
    # Local OpenAI-compatible servers (llama.cpp, vLLM, Ollama) take any key; OpenAI needs one.
    default_env = "OPENAI_API_KEY"
    try:
        key = api_key_from_env(cfg.llm, default_env, env)
    except EngineError:
        if base_url is None or "api_key_env" in cfg.llm.options:
            raise
        key = "unused"
    service: LLMService = OpenAILLMService(  # type: ignore[assignment]
        api_key=key,
        base_url=base_url,
        settings=OpenAILLMService.Settings(model=model, system_instruction=cfg.prompt),
    )
    return service


def _load(getter: Any) -> Any:
    try:
        return getter()
    except ModelLoadError as exc:
        raise EngineError(str(exc)) from exc


def load_models_for(cfg: AgentConfig, models: ModelStore) -> None:
    """Blocking: load the shared models this config needs (run it in a worker thread).

    The first call of a process would otherwise load them on the event loop, stalling every
    other call's audio for seconds.
    """
    loaders = [models.silero_session]
    if cfg.stt.name == "whisper-tiny-en":
        loaders.append(models.whisper_window)
    if cfg.llm.name == "intent-router":
        loaders.append(models.intent_router)
        if cfg.knowledge:  # embedding a new list takes a while: not on the event loop
            loaders.append(lambda: models.knowledge_index(cfg.knowledge))
    if cfg.tts.name == "piper":
        loaders.append(models.piper_voice)
    for load in loaders:
        _load(load)


@dataclass(frozen=True, slots=True)
class CallServices:
    stt: STTService
    llm: LLMService
    tts: TTSService


def build_services(
    cfg: AgentConfig, models: ModelStore, env: Mapping[str, str] | None = None
) -> CallServices:
    """All three engines for one call, or :class:`EngineError` naming the one that failed.

    The STT tells the LLM, through the call's :class:`CallerHearing`, which turns it was not
    sure of (the offline router then asks again instead of saying it does not know)."""
    env = os.environ if env is None else env
    hearing = CallerHearing()
    return CallServices(
        stt=build_stt(cfg, models, env, hearing),
        llm=build_llm(cfg, models, env, hearing),
        tts=build_tts(cfg, models, env),
    )
