"""Agent fields of issue 14 through the API: the knowledge list (saved, read back, malformed ones
refused with 400) and the turn timeout, both reaching the agent."""

from __future__ import annotations

import json

from conftest import Plane

from ai_pipeline.agent_config import parse_agent_config
from control.agent_wire import agent_config_for_call
from control.schemas import AgentBody

ENTRY = {"questions": ["When are you open?"], "answer": "Nine to five."}


async def test_a_knowledge_list_is_saved_and_read_back(plane: Plane) -> None:
    _, auth = await plane.customer()
    r = await plane.client.post(
        "/v1.0/agents", json={"name": "shop", "knowledge": [ENTRY]}, headers=auth
    )
    assert r.status_code == 201, await r.get_data()
    agent = await r.get_json()
    r = await plane.client.get(f"/v1.0/agents/{agent['id']}", headers=auth)
    assert (await r.get_json())["knowledge"] == [ENTRY]


async def test_a_malformed_knowledge_list_is_refused(plane: Plane) -> None:
    _, auth = await plane.customer()
    for bad in (
        [{"questions": [], "answer": "x"}],
        [{"questions": ["x"], "answer": ""}],
        [{"question": "x", "answer": "y"}],
        [ENTRY] * 201,
    ):
        body = {"name": "shop", "knowledge": bad}
        r = await plane.client.post("/v1.0/agents", json=body, headers=auth)
        assert r.status_code == 400, bad
        assert "knowledge" in json.dumps(await r.get_json())


def test_the_turn_timeout_reaches_the_agent_zero_included() -> None:
    """``user_turn_timeout_secs: 0`` (answer at the VAD's stop) is a setting, not "unset"."""
    for seconds in (0.0, 1.5):
        stored = AgentBody.model_validate(
            {"name": "fast", "user_turn_timeout_secs": seconds}
        ).model_dump(exclude={"name", "is_default"})
        agent = parse_agent_config(agent_config_for_call(stored))
        assert agent.user_turn_timeout_secs == seconds
