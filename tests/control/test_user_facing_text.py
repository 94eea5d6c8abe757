"""What a new user reads: validation errors in the body's own terms, OpenAPI summaries in English
(issue 11 item 10, control plane part)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import Plane, open_plane_for

from control.validation import field_path


@pytest.fixture
async def plane(tmp_path: object) -> AsyncIterator[Plane]:
    async with await open_plane_for("sqlite", tmp_path) as p:
        yield p


async def _fields(plane: Plane, path: str, body: dict[str, Any]) -> list[dict[str, str]]:
    _, auth = await plane.customer()
    r = await plane.client.post(path, json=body, headers=auth)
    got = await r.get_json()
    assert r.status_code == 400 and got["error"] == "invalid_request", got
    fields: list[dict[str, str]] = got["fields"]
    return fields


async def test_an_unknown_tool_is_named_with_its_index_and_the_allowed_ones(plane: Plane) -> None:
    fields = await _fields(plane, "/v1.0/agents", {"name": "a", "tools": ["end_call", "hang_up"]})
    assert fields == [
        {
            "field": "tools[1]",
            "message": "unknown tool 'hang_up'; allowed: end_call, transfer_call, send_dtmf,"
            " send_sms, join_conference, a webhook tool or an MCP server",
        }
    ]


async def test_a_bad_webhook_tool_points_into_the_object_not_at_union_members(
    plane: Plane,
) -> None:
    tool = {"name": "t", "type": "webhook", "url": "ftp://x.example/t"}
    fields = await _fields(plane, "/v1.0/agents", {"name": "a", "tools": [tool, 7]})
    assert [f["field"] for f in fields] == ["tools[0].url", "tools[1]"]
    assert fields[0]["message"] == "expected an http:// or https:// URL without spaces"
    assert fields[1]["message"] == (
        "a tool is a built-in tool's name, a webhook tool or an MCP server"
    )
    assert not any("literal" in f["field"] or "WebhookTool" in f["field"] for f in fields)


async def test_an_unknown_field_names_the_one_meant(plane: Plane) -> None:
    body = {"url": "https://example.com/hook", "events": ["call_created"]}
    (field,) = await _fields(plane, "/v1.0/webhooks", body)
    assert field["field"] == "events"
    assert field["message"] == (
        "unknown field 'events'; did you mean 'event_types'? (allowed here: event_types, secret,"
        " tls_verify, url)"
    )
    (field,) = await _fields(plane, "/v1.0/agents", {"name": "a", "vad": {"stop_sec": 1}})
    assert field["field"] == "vad.stop_sec"
    assert "did you mean 'stop_secs'?" in field["message"]


async def test_a_validator_message_has_no_pydantic_prefix(plane: Plane) -> None:
    (field,) = await _fields(plane, "/v1.0/agents", {"name": "a", "engines": {"stt": "nope"}})
    assert field["field"] == "engines.stt"
    assert field["message"].startswith("unknown stt engine 'nope'; known: ")


def test_field_paths_read_like_the_json() -> None:
    assert field_path(("tools", 0, "url")) == "tools[0].url"
    assert field_path(("routes", "numbers", 3)) == "routes.numbers[3]"
    assert field_path(("tools", 2, "tag"), skip=frozenset({"tag"})) == "tools[2]"
    assert field_path(()) == "body"


async def test_openapi_summaries_use_the_right_article(plane: Plane) -> None:
    doc = await (await plane.client.get("/openapi.json")).get_json()
    summaries = [op["summary"] for ops in doc["paths"].values() for op in ops.values()]
    assert "Get an access key" in summaries and "Get an agent" in summaries
    assert "Get an event" in summaries and "Get a webhook" in summaries
    wrong = [s for s in summaries if re.search(r"\ba [aeiou]", s, re.IGNORECASE)]
    assert wrong == []
