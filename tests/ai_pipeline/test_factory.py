"""Engines by configuration: offline ones share models, network ones take keys from env only."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from pipecat.services.cartesia.tts import CartesiaTTSService
from pipecat.services.elevenlabs.tts import ElevenLabsTTSService
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.stt import OpenAISTTService

from ai_pipeline.agent_config import parse_agent_config
from ai_pipeline.engines.factory import EngineError, build_llm, build_services, build_stt, build_tts
from ai_pipeline.engines.intent_router import IntentRouterLLMService
from ai_pipeline.engines.models import ModelStore
from ai_pipeline.engines.stt import WhisperPackagedSTTService
from ai_pipeline.engines.tts import PiperPackagedTTSService


def cfg(engines: dict[str, Any], **extra: Any) -> Any:
    return parse_agent_config({"engines": engines, **extra})


def test_offline_default_shares_one_model_per_process(models: ModelStore) -> None:
    a = build_services(cfg({}), models, env={})
    b = build_services(cfg({}), models, env={})
    assert isinstance(a.stt, WhisperPackagedSTTService)
    assert isinstance(a.llm, IntentRouterLLMService)
    assert isinstance(a.tts, PiperPackagedTTSService)
    assert a.stt is not b.stt  # services are per call...
    assert isinstance(b.stt, WhisperPackagedSTTService)
    assert isinstance(b.tts, PiperPackagedTTSService)
    assert a.stt._whisper is b.stt._whisper  # ...the models are not
    assert a.tts._voice is b.tts._voice


def test_openai_llm_needs_its_key_unless_local(models: ModelStore) -> None:
    with pytest.raises(EngineError, match="OPENAI_API_KEY is not set"):
        build_llm(cfg({"llm": "openai"}), models, env={})
    cloud = build_llm(cfg({"llm": "openai"}), models, env={"OPENAI_API_KEY": "sk-x"})
    assert isinstance(cloud, OpenAILLMService)
    # A local OpenAI-compatible server (llama.cpp, vLLM, Ollama) needs no key...
    local = build_llm(
        cfg({"llm": {"name": "openai", "base_url": "http://127.0.0.1:9/v1"}}), models, env={}
    )
    assert isinstance(local, OpenAILLMService)
    # ...but a key variable the config names explicitly must exist.
    with pytest.raises(EngineError, match="MY_LLM_KEY"):
        build_llm(
            cfg(
                {
                    "llm": {
                        "name": "openai",
                        "base_url": "http://127.0.0.1:9/v1",
                        "api_key_env": "MY_LLM_KEY",
                    }
                }
            ),
            models,
            env={},
        )


@pytest.mark.parametrize(
    ("engine", "env_var", "cls"),
    [
        ("cartesia", "CARTESIA_API_KEY", CartesiaTTSService),
        ("elevenlabs", "ELEVENLABS_API_KEY", ElevenLabsTTSService),
    ],
)
def test_cloud_tts_by_name(models: ModelStore, engine: str, env_var: str, cls: type) -> None:
    config = cfg({"tts": {"name": engine, "voice": "voice-123"}})
    with pytest.raises(EngineError, match=env_var):
        build_tts(config, models, env={})
    service = build_tts(config, models, env={env_var: "k"})
    assert isinstance(service, cls)


def test_cloud_stt_by_name(models: ModelStore) -> None:
    with pytest.raises(EngineError, match="OPENAI_API_KEY"):
        build_stt(cfg({"stt": "openai"}), models, env={})
    assert isinstance(
        build_stt(cfg({"stt": "openai"}), models, env={"OPENAI_API_KEY": "k"}), OpenAISTTService
    )


def test_missing_sdk_is_an_engine_error(models: ModelStore) -> None:
    # The Deepgram SDK is an optional pipecat extra, not installed here.
    if importlib.util.find_spec("deepgram") is not None:
        pytest.skip("deepgram SDK installed: nothing missing to test")
    with pytest.raises(EngineError, match=r"pipecat-ai\[deepgram\]"):
        build_stt(cfg({"stt": "deepgram"}), models, env={"DEEPGRAM_API_KEY": "k"})


def test_offline_engines_refuse_what_they_cannot_do(models: ModelStore) -> None:
    with pytest.raises(EngineError, match="English only"):
        build_stt(cfg({}, language="de"), models, env={})
    with pytest.raises(EngineError, match="only the packaged"):
        build_tts(cfg({}, voice="en_GB-alba-medium"), models, env={})
