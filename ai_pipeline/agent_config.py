"""The agent configuration carried in a call's ``CallStart.agent_config``: schema and validation.

The control plane stores agents as JSON and the media core forwards that JSON untouched, so this
module is the one place that decides what a valid agent is. It is validated once, when the call
starts; anything wrong (an unknown engine, a key pasted into the config, a negative timeout) raises
:class:`AgentConfigError` with a message naming the field, and the pipeline turns that into a fatal
``Error`` frame for that call only.

API keys are never part of the configuration: an engine names the environment variable that holds
its key (``api_key_env``), so keys stay out of the API, the database and the logs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ai_pipeline.engine_names import LLM_ENGINES, STT_ENGINES, TTS_ENGINES
from ai_pipeline.engines.knowledge import KnowledgeEntry, KnowledgeError, parse_knowledge
from ai_pipeline.tools import DEFAULT_TOOL_NAMES, ToolSpec, parse_tool_specs

DEFAULT_GREETING = "Hello, thank you for calling. How can I help you?"
DEFAULT_GOODBYE = "Thank you for calling. Goodbye!"
DEFAULT_PROMPT = (
    "You are a friendly phone agent. Answer briefly, in one or two short sentences. "
    "Use transfer_call to send the caller to a department and end_call when they are done."
)
FORBIDDEN_KEYS = frozenset({"api_key", "apikey", "key", "token", "secret", "password"})


# Active speech level of the agent's voice: loud and clear on a handset, 17 dB of headroom
# to the -3 dBFS peak ceiling.
DEFAULT_VOICE_LEVEL_DBFS = -20.0


class AgentConfigError(ValueError):
    """The agent configuration is invalid; the message names the offending field."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """One engine choice: a registered name plus its engine-specific options."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def option_str(self, key: str, default: str | None = None) -> str | None:
        value = self.options.get(key, default)
        if value is not None and not isinstance(value, str):
            raise AgentConfigError(f"engines.{self.name}.{key} must be a string")
        return value


@dataclass(frozen=True, slots=True)
class VadConfig:
    """Silero VAD thresholds (pipecat's ``VADParams``), times in seconds."""

    confidence: float = 0.7
    start_secs: float = 0.2
    stop_secs: float = 0.2
    min_volume: float = 0.6


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """A validated agent: what the per-call pipeline is built from."""

    prompt: str = DEFAULT_PROMPT
    greeting: str = DEFAULT_GREETING
    goodbye: str = DEFAULT_GOODBYE
    language: str = "en"
    voice: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_timeout_secs: float = 10.0
    user_turn_timeout_secs: float = 0.6
    stt: EngineConfig = field(default_factory=lambda: EngineConfig("whisper-tiny-en"))
    llm: EngineConfig = field(default_factory=lambda: EngineConfig("intent-router"))
    tts: EngineConfig = field(default_factory=lambda: EngineConfig("piper"))
    vad: VadConfig = field(default_factory=VadConfig)
    # The agent's speech at the caller (ai_pipeline/voice_level.py); None leaves TTS as it is.
    voice_level_dbfs: float | None = DEFAULT_VOICE_LEVEL_DBFS
    # The conference join_conference moves the caller into when the LLM names none; without
    # it the offline intent router cannot offer that tool (it cannot pick a conference).
    default_conference_id: str | None = None
    # Questions the customer wrote down, with answers (ai_pipeline/engines/knowledge.py).
    knowledge: tuple[KnowledgeEntry, ...] = ()
    # The conversation so far, when a call is handed over from another agent (agent:<id>
    # transfer): (LLM role "user" or "assistant", text), oldest first; seeds the LLM context.
    history: tuple[tuple[str, str], ...] = ()


_TOP_LEVEL = frozenset(
    {
        "prompt",
        "greeting",
        "goodbye",
        "language",
        "voice",
        "tools",
        "tool_timeout_secs",
        "user_turn_timeout_secs",
        "engines",
        "vad",
        "voice_level_dbfs",
        "default_conference_id",
        "knowledge",
        "history",
    }
)
MAX_HISTORY_TURNS = 50  # the last turns of a long call: enough context, a bounded prompt
MAX_HISTORY_TEXT = 2000
_HISTORY_ROLES = {"caller": "user", "user": "user", "agent": "assistant", "assistant": "assistant"}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def _str(raw: Mapping[str, Any], key: str, default: str, *, allow_empty: bool = True) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise AgentConfigError(f"{key} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise AgentConfigError(f"{key} must not be empty")
    return value


def _number(raw: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = raw.get(key, default)
    # bool is an int subclass: "true" seconds is a mistake, not 1 second.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AgentConfigError(f"{key} must be a number, got {type(value).__name__}")
    if not low <= float(value) <= high:
        raise AgentConfigError(f"{key} must be between {low} and {high}, got {value}")
    return float(value)


def _reject_secrets(options: Mapping[str, Any], where: str) -> None:
    for key in options:
        if key.lower() in FORBIDDEN_KEYS:
            raise AgentConfigError(
                f"{where}.{key}: keys are not accepted in agent config; "
                "name an environment variable with api_key_env instead"
            )


def _engine(raw: Any, kind: str, default: str, known: frozenset[str]) -> EngineConfig:
    if raw is None:
        return EngineConfig(default)
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        raise AgentConfigError(f"engines.{kind} must be a name or an object")
    name = raw.get("name")
    if not isinstance(name, str):
        raise AgentConfigError(f"engines.{kind}.name must be a string")
    if name not in known:
        raise AgentConfigError(f"unknown {kind} engine {name!r}; known: {', '.join(sorted(known))}")
    options = {k: v for k, v in raw.items() if k != "name"}
    _reject_secrets(options, f"engines.{kind}")
    return EngineConfig(name, options)


def _vad(raw: Any) -> VadConfig:
    if raw is None:
        return VadConfig()
    if not isinstance(raw, Mapping):
        raise AgentConfigError("vad must be an object")
    unknown = set(raw) - {"confidence", "start_secs", "stop_secs", "min_volume"}
    if unknown:
        raise AgentConfigError(f"vad: unknown field(s) {sorted(unknown)}")
    d = VadConfig()
    return VadConfig(
        confidence=_number(raw, "confidence", d.confidence, 0.05, 1.0),
        start_secs=_number(raw, "start_secs", d.start_secs, 0.0, 5.0),
        stop_secs=_number(raw, "stop_secs", d.stop_secs, 0.05, 5.0),
        min_volume=_number(raw, "min_volume", d.min_volume, 0.0, 1.0),
    )


def _voice_level(raw: Mapping[str, Any]) -> float | None:
    if "voice_level_dbfs" in raw and raw["voice_level_dbfs"] is None:
        return None  # explicitly off
    return _number(raw, "voice_level_dbfs", DEFAULT_VOICE_LEVEL_DBFS, -35.0, -6.0)


def _conference_id(raw: Mapping[str, Any]) -> str | None:
    value = raw.get("default_conference_id")
    if value is None:
        return None
    if not isinstance(value, str) or not _UUID.match(value):
        raise AgentConfigError(f"default_conference_id must be a conference id, got {value!r}")
    return value.lower()


def _history(raw: Any) -> tuple[tuple[str, str], ...]:
    """``[{role: caller|agent (or user|assistant), text}]``, at most the last 50 turns kept."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise AgentConfigError("history must be a list of {role, text}")
    turns = []
    for i, turn in enumerate(raw):
        role = turn.get("role") if isinstance(turn, Mapping) else None
        text = turn.get("text") if isinstance(turn, Mapping) else None
        if role not in _HISTORY_ROLES or not isinstance(text, str) or set(turn) - {"role", "text"}:
            raise AgentConfigError(f"history[{i}]: want {{role: caller|agent, text}}")
        if len(text) > MAX_HISTORY_TEXT:
            raise AgentConfigError(f"history[{i}]: text longer than {MAX_HISTORY_TEXT}")
        turns.append((_HISTORY_ROLES[role], text))
    return tuple(turns[-MAX_HISTORY_TURNS:])


def parse_agent_config(raw: Mapping[str, Any]) -> AgentConfig:
    """Validate ``CallStart.agent_config``; an empty dict gives the offline default agent."""
    if not isinstance(raw, Mapping):
        raise AgentConfigError("agent_config must be a JSON object")
    unknown = set(raw) - _TOP_LEVEL
    if unknown:
        raise AgentConfigError(f"unknown field(s) {sorted(unknown)}")
    engines = raw.get("engines") or {}
    if not isinstance(engines, Mapping):
        raise AgentConfigError("engines must be an object")
    unknown_kinds = set(engines) - {"stt", "llm", "tts"}
    if unknown_kinds:
        raise AgentConfigError(f"engines: unknown kind(s) {sorted(unknown_kinds)}")
    voice = raw.get("voice")
    if voice is not None and not isinstance(voice, str):
        raise AgentConfigError("voice must be a string")
    language = _str(raw, "language", "en", allow_empty=False)
    tools_raw = raw.get("tools", list(DEFAULT_TOOL_NAMES))
    try:
        tools = parse_tool_specs(tools_raw)
    except ValueError as exc:
        raise AgentConfigError(f"tools: {exc}") from exc
    try:
        knowledge = parse_knowledge(raw.get("knowledge"))
    except KnowledgeError as exc:
        raise AgentConfigError(str(exc)) from exc
    return AgentConfig(
        prompt=_str(raw, "prompt", DEFAULT_PROMPT),
        greeting=_str(raw, "greeting", DEFAULT_GREETING),
        goodbye=_str(raw, "goodbye", DEFAULT_GOODBYE),
        language=language,
        voice=voice,
        tools=tools,
        tool_timeout_secs=_number(raw, "tool_timeout_secs", 10.0, 0.1, 300.0),
        user_turn_timeout_secs=_number(raw, "user_turn_timeout_secs", 0.6, 0.0, 5.0),
        stt=_engine(engines.get("stt"), "stt", "whisper-tiny-en", STT_ENGINES),
        llm=_engine(engines.get("llm"), "llm", "intent-router", LLM_ENGINES),
        tts=_engine(engines.get("tts"), "tts", "piper", TTS_ENGINES),
        vad=_vad(raw.get("vad")),
        voice_level_dbfs=_voice_level(raw),
        default_conference_id=_conference_id(raw),
        knowledge=knowledge,
        history=_history(raw.get("history")),
    )
