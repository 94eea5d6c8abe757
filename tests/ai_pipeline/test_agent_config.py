"""Agent configuration: defaults, engine choices, and every kind of bad input."""

from __future__ import annotations

from typing import Any

import pytest

from ai_pipeline.agent_config import (
    DEFAULT_GREETING,
    AgentConfigError,
    EngineConfig,
    parse_agent_config,
)
from ai_pipeline.tools import DEFAULT_TOOL_NAMES


def test_empty_config_is_the_offline_default() -> None:
    cfg = parse_agent_config({})
    assert (cfg.stt.name, cfg.llm.name, cfg.tts.name) == (
        "whisper-tiny-en",
        "intent-router",
        "piper",
    )
    assert cfg.greeting == DEFAULT_GREETING
    assert tuple(t.name for t in cfg.tools) == DEFAULT_TOOL_NAMES
    assert cfg.default_conference_id is None
    assert cfg.vad.stop_secs == 0.2


def test_engines_by_name_or_object() -> None:
    cfg = parse_agent_config(
        {
            "engines": {
                "stt": "deepgram",
                "llm": {"name": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"},
                "tts": {"name": "cartesia", "voice": "v1", "api_key_env": "MY_KEY"},
            },
            "greeting": "",
            "vad": {"confidence": 0.5, "stop_secs": 0.4},
        }
    )
    assert cfg.stt == EngineConfig("deepgram", {})
    assert cfg.llm.option_str("base_url") == "http://127.0.0.1:1/v1"
    assert cfg.tts.option_str("api_key_env") == "MY_KEY"
    assert cfg.greeting == ""
    assert (cfg.vad.confidence, cfg.vad.stop_secs, cfg.vad.start_secs) == (0.5, 0.4, 0.2)


def test_custom_tool_is_accepted() -> None:
    cfg = parse_agent_config(
        {
            "tools": [
                "end_call",
                {
                    "name": "lookup_order",
                    "description": "Find an order",
                    "parameters": {
                        "properties": {"order_id": {"type": "string"}},
                        "required": ["order_id"],
                    },
                },
            ]
        }
    )
    assert [t.name for t in cfg.tools] == ["end_call", "lookup_order"]
    assert cfg.tools[1].required == ("order_id",)
    schema = cfg.tools[1].to_function_schema()
    assert schema.name == "lookup_order"
    assert schema.properties == {"order_id": {"type": "string"}}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"engines": {"llm": "gpt-local-magic"}}, "unknown llm engine"),
        ({"engines": {"stt": 7}}, "engines.stt must be"),
        ({"engines": {"tts": {"voice": "x"}}}, "engines.tts.name"),
        ({"engines": {"video": "x"}}, "unknown kind"),
        ({"engines": ["stt"]}, "engines must be an object"),
        ({"engines": {"llm": {"name": "openai", "api_key": "sk-123"}}}, "keys are not accepted"),
        ({"prompt": 3}, "prompt must be a string"),
        ({"language": " "}, "language must not be empty"),
        ({"tool_timeout_secs": 0}, "between"),
        ({"tool_timeout_secs": True}, "must be a number"),
        ({"tool_timeout_secs": "5"}, "must be a number"),
        ({"vad": {"confidence": 2}}, "between"),
        ({"vad": {"loudness": 1}}, "unknown field"),
        ({"vad": 1}, "vad must be an object"),
        ({"voice": 5}, "voice must be a string"),
        ({"voice_level_dbfs": 0}, "between"),
        ({"voice_level_dbfs": "-20"}, "must be a number"),
        ({"tools": "end_call"}, "must be a list"),
        ({"tools": ["teleport"]}, "unknown built-in tool"),
        ({"tools": ["end_call", "end_call"]}, "duplicate"),
        ({"tools": [{"name": "bad name!"}]}, "tool name"),
        (
            {"tools": [{"name": "t", "parameters": {"properties": {}, "required": ["x"]}}]},
            "not in properties",
        ),
        ({"tools": [{"name": "t", "parameters": []}]}, "JSON-schema object"),
        ({"tools": [3]}, "built-in name or an object"),
        ({"surprise": 1}, "unknown field"),
    ],
)
def test_bad_config_names_the_problem(raw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(AgentConfigError, match=fragment):
        parse_agent_config(raw)


def test_not_an_object() -> None:
    with pytest.raises(AgentConfigError, match="JSON object"):
        parse_agent_config([])  # type: ignore[arg-type]


def test_option_type_checked() -> None:
    cfg = parse_agent_config({"engines": {"llm": {"name": "openai", "model": 4}}})
    with pytest.raises(AgentConfigError, match="must be a string"):
        cfg.llm.option_str("model")


def test_a_default_conference_is_a_conference_id() -> None:
    conference = "6F1C2B9A-0000-4000-8000-00000000ABCD"
    cfg = parse_agent_config({"tools": ["join_conference"], "default_conference_id": conference})
    assert cfg.default_conference_id == conference.lower()
    with pytest.raises(AgentConfigError, match="default_conference_id"):
        parse_agent_config({"default_conference_id": "room 5"})
