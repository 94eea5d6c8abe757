"""An agent's knowledge list through the API: saved and read back, malformed ones refused (400)."""

from __future__ import annotations

import json

from conftest import Plane

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
