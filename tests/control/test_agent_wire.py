"""An agent saved through the API is an agent the agent process accepts, and only what it needs."""

from __future__ import annotations

import json
from typing import Any

from conftest import Plane

from ai_pipeline.agent_config import parse_agent_config
from control.agent_wire import agent_config_for_call
from control.bootstrap import DEFAULT_AGENT_DETAIL
from control.schemas import BUILTIN_TOOL_NAMES, AgentBody

FULL_AGENT: dict[str, Any] = {
    "name": "support line",
    "prompt": "Help with orders.",
    "greeting": "Support, hello!",
    "tools": [
        "end_call",
        "transfer_call",
        {
            "name": "order_status",
            "type": "webhook",
            "url": "https://example.invalid/hook",
            "secret": "s3cret-for-the-control-plane",
            "description": "Look up an order",
            "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
        },
    ],
    "transfer_targets": {"sales": "sip:sales@127.0.0.1"},
    "engines": {
        "stt": "whisper-tiny-en",
        "llm": "openai",
        "tts": "flite",
        "options": {"llm": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}},
    },
    "language": "en-GB",
    "vad": {"stop_secs": 0.4, "confidence": 0.6},
    "voice_level_dbfs": -24,
    "routes": {"numbers": ["+15550001111"]},
}


def as_stored(body: dict[str, Any]) -> dict[str, Any]:
    """What the agents route keeps in the row's detail document."""
    return AgentBody.model_validate(body).model_dump(exclude={"name", "is_default"})


def test_a_full_api_agent_is_a_valid_agent_config() -> None:
    config = agent_config_for_call(as_stored(FULL_AGENT))
    agent = parse_agent_config(config)  # raises on anything the agent would refuse
    assert (
        agent.llm.name == "openai" and agent.llm.option_str("base_url") == "http://127.0.0.1:9/v1"
    )
    assert agent.tts.name == "flite" and agent.language == "en-GB"
    assert agent.greeting == "Support, hello!" and agent.vad.stop_secs == 0.4
    assert agent.voice_level_dbfs == -24
    assert [t.name for t in agent.tools] == ["end_call", "transfer_call", "order_status"]


def test_voice_levelling_defaults_on_and_can_be_turned_off() -> None:
    default = agent_config_for_call(as_stored({"name": "a"}))
    assert parse_agent_config(default).voice_level_dbfs == -20
    off = agent_config_for_call(as_stored({"name": "a", "voice_level_dbfs": None}))
    assert parse_agent_config(off).voice_level_dbfs is None


def test_control_plane_secrets_and_routing_stay_out_of_the_call() -> None:
    config = agent_config_for_call(as_stored(FULL_AGENT))
    assert "s3cret" not in repr(config) and "example.invalid" not in repr(config)
    assert not {"name", "routes", "transfer_targets", "is_default"} & set(config)


def test_empty_api_fields_leave_the_agents_defaults() -> None:
    config = agent_config_for_call(as_stored({"name": "minimal"}))
    agent = parse_agent_config(config)
    assert "greeting" not in config and agent.greeting  # the agent's own greeting, not silence
    assert agent.stt.name == "whisper-tiny-en" and agent.llm.name == "intent-router"


def test_the_bootstrapped_default_agent_is_valid() -> None:
    parse_agent_config(agent_config_for_call(DEFAULT_AGENT_DETAIL))


async def test_an_unknown_engine_is_refused_when_the_agent_is_saved(plane: Plane) -> None:
    _, auth = await plane.customer()
    body = {"name": "typo", "engines": {"stt": "whisper"}}
    r = await plane.client.post("/v1.0/agents", json=body, headers=auth)
    assert r.status_code == 400
    err = await r.get_json()
    assert "whisper-tiny-en" in json.dumps(err)  # the message names what is known


def test_every_tool_the_api_accepts_is_one_the_agent_knows() -> None:
    """An agent saved with any built-in tool must start (the agent refused send_sms and
    join_conference once: every call to such an agent ended at once with bad_agent_config)."""
    builtins = list(BUILTIN_TOOL_NAMES)  # what the API's validation accepts by name
    assert {"send_sms", "join_conference"} <= set(builtins)
    conference = "6f1c2b9a-0000-4000-8000-00000000abcd"
    body = {"name": "all", "tools": builtins, "default_conference_id": conference}
    agent = parse_agent_config(agent_config_for_call(as_stored(body)))
    assert [t.name for t in agent.tools] == builtins
    assert agent.default_conference_id == conference
