"""An agent's tool secrets are never shown by the API, and a read-edit-PUT round trip keeps them."""

from __future__ import annotations

import json
from typing import Any

from conftest import Plane

from control.agent_secrets import hint, masked, restored

WEBHOOK_SECRET = "whsec-0123456789abcdef-the-signing-key"
BEARER = "Bearer tok-9f8e7d6c5b4a39281706"
CLIENT_SECRET = "oauth-client-secret-5a6b7c8d9e0f"
API_KEY = "k-short"  # under 16 characters: its hint shows none of it

AGENT: dict[str, Any] = {
    "name": "tools bot",
    "tools": [
        "end_call",
        {
            "name": "lookup",
            "type": "webhook",
            "url": "https://h.example/x",
            "secret": WEBHOOK_SECRET,
        },
        {
            "name": "shop",
            "type": "mcp",
            "url": "https://mcp.example/mcp",
            "headers": {"Authorization": BEARER, "X-Api-Key": API_KEY},
        },
        {
            "name": "crm",
            "type": "mcp",
            "url": "https://crm.example/mcp",
            "oauth": {
                "token_url": "https://crm.example/token",
                "client_id": "callbridge",
                "client_secret": CLIENT_SECRET,
            },
        },
    ],
}
SECRETS = (WEBHOOK_SECRET, BEARER, CLIENT_SECRET, API_KEY)


def test_a_hint_shows_at_most_four_characters_of_a_long_secret() -> None:
    assert hint(WEBHOOK_SECRET) == "whse..."
    assert hint(API_KEY) == "..."
    assert hint("") == ""


def test_masked_hides_every_secret_and_restored_brings_back_unchanged_ones() -> None:
    detail = json.loads(json.dumps(AGENT))
    shown = masked(detail)
    assert not any(s in json.dumps(shown) for s in SECRETS)
    assert detail == AGENT  # the stored detail itself is left as it was
    assert restored(shown, detail) == detail
    # a new value replaces; a hint of another tool's secret is not that secret
    shown["tools"][1]["secret"] = "a-new-signing-key-for-lookup"
    shown["tools"][2]["name"] = "renamed"
    back = restored(shown, detail)
    assert back["tools"][1]["secret"] == "a-new-signing-key-for-lookup"
    assert back["tools"][2]["headers"]["Authorization"] == hint(BEARER)
    assert back["tools"][3]["oauth"]["client_secret"] == CLIENT_SECRET


async def test_no_role_reads_a_tool_secret_and_a_round_trip_keeps_them(plane: Plane) -> None:
    customer_id, auth = await plane.customer("customer_manager")
    viewer = await plane.key(customer_id, "agent_user")
    c = plane.client
    r = await c.post("/v1.0/agents", json=AGENT, headers=auth)
    assert r.status_code == 201, await r.get_data()
    created = await r.get_json()
    agent_id = created["id"]
    for headers in (auth, viewer):
        one = await (await c.get(f"/v1.0/agents/{agent_id}", headers=headers)).get_data()
        listed = await (await c.get("/v1.0/agents", headers=headers)).get_data()
        for body in (one, listed, json.dumps(created).encode()):
            assert not any(s.encode() in body for s in SECRETS), body
    shown = json.loads(one)
    assert shown["tools"][1]["secret"] == hint(WEBHOOK_SECRET)

    edited = {k: shown[k] for k in AGENT} | {"name": "renamed"}
    r = await c.put(f"/v1.0/agents/{agent_id}", json=edited, headers=auth)
    assert r.status_code == 200, await r.get_data()
    row = await plane.services.store.get("agents", agent_id, customer_id)
    assert row is not None and row["name"] == "renamed"
    tools = row["detail"]["tools"]  # every secret still the real one
    assert tools[1]["secret"] == WEBHOOK_SECRET
    assert tools[2]["headers"] == {"Authorization": BEARER, "X-Api-Key": API_KEY}
    assert tools[3]["oauth"]["client_secret"] == CLIENT_SECRET
