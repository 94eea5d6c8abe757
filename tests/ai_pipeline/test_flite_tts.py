"""Flite, the permissive offline TTS: it speaks, Whisper understands it, a call can use it."""

from __future__ import annotations

import pytest

from ai_pipeline.agent_config import parse_agent_config
from ai_pipeline.engines.factory import EngineError, build_tts
from ai_pipeline.engines.flite_tts import (
    FliteError,
    FliteTTSService,
    flite_binary,
    synthesize_wav,
)
from ai_pipeline.engines.models import ModelStore
from ai_pipeline.engines.stt import transcribe_pcm16
from ai_pipeline.turnbench import words
from proto.messages import Audio, Transcript
from tests.ai_pipeline.call_harness import Call, agent_text, run_scenario
from tests.conftest import require_service


@pytest.fixture(autouse=True)
def _needs_flite() -> None:
    if flite_binary() is None:
        require_service("flite", "the Debian package flite is not installed")


def test_flite_speaks_16khz_that_whisper_understands(models: ModelStore) -> None:
    pcm16, rate_hz = synthesize_wav("Please hold while I transfer you to billing.", "slt")
    assert rate_hz == 16000
    assert 1.5 < len(pcm16) / 2 / rate_hz < 6.0
    heard = set(words(transcribe_pcm16(models.whisper(), pcm16)))
    assert {"hold", "transfer", "billing"} <= heard, heard


def test_text_is_never_an_option() -> None:
    pcm16, _ = synthesize_wav("-o /tmp/x.wav --help", "slt")
    assert len(pcm16) > 3200  # spoke the words instead of obeying them


def test_bad_voice_and_missing_binary() -> None:
    with pytest.raises(FliteError, match="unknown flite voice"):
        synthesize_wav("hi", "darth")
    with pytest.raises(FliteError):
        FliteTTSService(voice="darth")
    with pytest.raises(OSError):
        synthesize_wav("hi", "slt", binary="/nonexistent/flite")
    config = parse_agent_config({"engines": {"tts": {"name": "flite", "voice": "darth"}}})
    with pytest.raises(EngineError, match="unknown voice"):
        build_tts(config, ModelStore(), env={})


def test_call_with_flite_greets(models: ModelStore) -> None:
    async def main() -> None:
        call = Call(models, {"greeting": "Hello from flite.", "engines": {"tts": "flite"}})
        i, greeting = await call.wait_for(Transcript, agent_text)
        assert greeting.text == "Hello from flite."
        audio_ms = sum(len(f.pcm16) for f in call.frames[:i] if isinstance(f, Audio)) / 32
        assert audio_ms > 500
        await call.finish()

    run_scenario(main)
