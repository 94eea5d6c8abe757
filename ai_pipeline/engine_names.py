"""The engine names an agent configuration may use, per kind.

Dependency-free on purpose: the control plane validates agent definitions against these at its
API (a typo is a 400 when the agent is saved, not a failed call later), without importing pipecat.
"""

from __future__ import annotations

STT_ENGINES = frozenset({"whisper-tiny-en", "deepgram", "openai"})
LLM_ENGINES = frozenset({"intent-router", "openai"})
TTS_ENGINES = frozenset({"piper", "flite", "cartesia", "elevenlabs", "openai"})
ENGINES_BY_KIND = {"stt": STT_ENGINES, "llm": LLM_ENGINES, "tts": TTS_ENGINES}
DEFAULT_ENGINES = {"stt": "whisper-tiny-en", "llm": "intent-router", "tts": "piper"}
