"""MCP servers as an agent's tools through the real control plane (API, storage, hooks, tool
executor) against a real MCP server written with the official SDK (tests/control/mcp_server.py):
a stdio server the operator configured and a customer's streamable-HTTP URL, listed when the call
starts and offered to the agent with their schemas, called by the agent's names; a server that
hangs, crashes or answers garbage is a clear tool error and the call goes on; another customer
can neither name a server configured for one customer nor call its tools."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeCall, Plane, open_plane_for

from ai_pipeline.agent_config import parse_agent_config
from control.mcp_servers import McpConfigError, McpStdioServer, parse_stdio_flags
from control.mcp_tools import McpServer
from media.hooks import CallInfo
from tests.control.test_mcp_tools import (
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN,
    http_server,
    oauth_server,
    token_server,
)

__all__ = ["http_server", "oauth_server", "token_server"]  # the fixtures, used by name below
SERVER = str(Path(__file__).with_name("mcp_server.py"))
OWNER = str(uuid.uuid4())  # the customer the operator's "vip" server is for


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    stdio = (
        McpStdioServer("orders", (sys.executable, SERVER, "stdio")),
        McpStdioServer("junk", (sys.executable, SERVER, "garbage")),
        McpStdioServer("vip", (sys.executable, SERVER, "stdio"), customer_id=OWNER),
    )
    async with await open_plane_for(
        "sqlite", tmp_path, mcp_stdio=stdio, mcp_list_timeout_s=20.0, mcp_call_timeout_s=20.0
    ) as p:
        yield p


async def _agent(plane: Plane, auth: dict[str, str], tools: list[Any]) -> tuple[int, Any]:
    r = await plane.client.post("/v1.0/agents", json={"name": "a", "tools": tools}, headers=auth)
    return r.status_code, await r.get_json()


async def _start_call(plane: Plane, agent_id: str) -> tuple[FakeCall, dict[str, Any]]:
    call = FakeCall(str(uuid.uuid4()))
    assignment = await plane.hooks.call_created(
        CallInfo(call.call_id, "audiosocket", params={"agent_id": agent_id})
    )
    return call, dict(assignment.config)


async def _tool_events(plane: Plane, call_id: str) -> list[dict[str, Any]]:
    rows = await plane.services.store.find("events", resource_id=call_id, type="tool_called")
    return [json.loads(r["data"]) if isinstance(r["data"], str) else r["data"] for r in rows]


async def test_both_transports_are_offered_with_their_schemas_and_called(
    plane: Plane, http_server: McpServer
) -> None:
    _, auth = await plane.customer()
    tools = [
        "end_call",
        {"type": "mcp", "name": "orders"},  # the operator's stdio server
        {"type": "mcp", "name": "shop", "url": http_server.url, "tools": ["lookup_order", "add"]},
    ]
    status, agent = await _agent(plane, auth, tools)
    assert status == 201, agent
    call, config = await _start_call(plane, agent["id"])
    offered = {t["name"] if isinstance(t, dict) else t: t for t in config["tools"]}
    assert {"orders__add", "orders__open_ticket", "shop__lookup_order", "shop__add"} <= set(offered)
    assert "shop__hang" not in offered  # not among the entry's tools
    assert "end_call" in offered and not any("url" in str(t) for t in config["tools"])
    assert offered["orders__add"]["parameters"]["required"] == ["a", "b"]
    # the agent accepts them, a pydantic-model argument included (its $defs inlined)
    specs = {s.name: s for s in parse_agent_config(config).tools}
    customer = specs["orders__open_ticket"].properties["customer"]
    assert customer["properties"]["address"]["properties"]["city"]["type"] == "string"
    assert "$ref" not in json.dumps(customer)

    h = plane.hooks
    out = await h.execute_tool(call, "orders__add", {"a": 2, "b": 40})
    assert (out.result, out.is_error) == ({"result": 42}, False)
    out = await h.execute_tool(call, "shop__lookup_order", {"order_number": "A7"})
    assert (out.result, out.is_error) == ({"result": "order A7 shipped on Monday"}, False)
    args = {"customer": {"name": "Ann", "address": {"street": "Main 1", "city": "Oslo"}}}
    out = await h.execute_tool(call, "orders__open_ticket", args)
    assert out.result == {"ticket": "T-1", "for": "Ann in Oslo"}
    out = await h.execute_tool(call, "shop__hang", {})  # on the server, but not offered
    assert out.is_error and out.result["error"] == "unknown_tool"
    events = await _tool_events(plane, call.call_id)
    assert [(e["name"], e["is_error"]) for e in events] == [
        ("orders__add", False),
        ("shop__lookup_order", False),
        ("orders__open_ticket", False),
        ("shop__hang", True),
    ]
    assert events[0]["arguments"] == {"a": 2, "b": 40} and events[0]["result"] == {"result": 42}


async def test_a_server_that_hangs_crashes_or_answers_garbage_is_a_tool_error(
    tmp_path: Path,
) -> None:
    stdio = (
        McpStdioServer("orders", (sys.executable, SERVER, "stdio")),
        McpStdioServer("junk", (sys.executable, SERVER, "garbage")),
    )
    async with await open_plane_for(
        "sqlite", tmp_path, mcp_stdio=stdio, mcp_list_timeout_s=20.0, mcp_call_timeout_s=8.0
    ) as plane:
        _, auth = await plane.customer()
        status, agent = await _agent(
            plane, auth, [{"type": "mcp", "name": "orders"}, {"type": "mcp", "name": "junk"}]
        )
        assert status == 201, agent
        call, config = await _start_call(plane, agent["id"])
        names = {t["name"] for t in config["tools"]}
        assert "orders__add" in names and not any(n.startswith("junk") for n in names)
        h = plane.hooks
        hang = await h.execute_tool(call, "orders__hang", {})
        assert hang.result == {
            "error": "mcp_timeout",
            "message": "the orders service did not answer within 8 s",
        }
        crash = await h.execute_tool(call, "orders__crash", {})
        assert crash.is_error and crash.result["error"] in ("mcp_unavailable", "mcp_timeout")
        garble = await h.execute_tool(call, "orders__garble", {})
        assert garble.result["error"] == "mcp_bad_answer"
        fail = await h.execute_tool(call, "orders__fail", {})
        assert fail.result == {"error": "tool_error", "message": "Error executing tool fail"}
        # the call goes on: its next tool call works, nothing hung it up
        ok = await h.execute_tool(call, "orders__add", {"a": 1, "b": 1})
        assert ok.result == {"result": 2} and call.actions == []
        events = await _tool_events(plane, call.call_id)
        assert [e["is_error"] for e in events] == [True, True, True, True, False]


async def test_another_customer_cannot_use_a_customers_server(
    plane: Plane, http_server: McpServer
) -> None:
    await plane.services.store.insert(
        "customers", {"id": OWNER, "customer_id": OWNER, "name": "owner"}
    )
    owner_auth = await plane.key(OWNER, "customer_admin")
    _, other_auth = await plane.customer()
    vip = {"type": "mcp", "name": "vip"}
    status, body = await _agent(plane, other_auth, [vip])
    assert status == 400 and body["fields"][0]["field"] == "tools[0].name", body
    assert "no MCP server 'vip' is configured here" in body["fields"][0]["message"]
    # nor can a customer run a command of its own on our host
    status, body = await _agent(plane, other_auth, [{**vip, "command": ["/bin/sh"]}])
    assert status == 400 and body["fields"][0]["field"] == "tools[0].command", body
    status, owners = await _agent(plane, owner_auth, [vip])
    assert status == 201, owners
    status, others = await _agent(
        plane, other_auth, [{"type": "mcp", "name": "shop", "url": http_server.url}]
    )
    assert status == 201, others
    # the other customer's call cannot reach the owner's server by naming its tools
    call, config = await _start_call(plane, others["id"])
    assert not any(t["name"].startswith("vip__") for t in config["tools"])
    out = await plane.hooks.execute_tool(call, "vip__add", {"a": 1, "b": 2})
    assert out.is_error and out.result["error"] == "unknown_tool"
    # nor start a call with the owner's agent (its own credentials pick its own agents)
    with pytest.raises(Exception, match="no agent"):
        await plane.hooks.call_created(
            CallInfo(
                str(uuid.uuid4()),
                "twilio",
                params={"agent_id": owners["id"], "customer_id": others["customer_id"]},
            )
        )
    owner_call, owner_config = await _start_call(plane, owners["id"])
    assert "vip__add" in {t["name"] for t in owner_config["tools"]}
    out = await plane.hooks.execute_tool(owner_call, "vip__add", {"a": 1, "b": 2})
    assert out.result == {"result": 3}


def test_serve_mcp_stdio_flags_are_checked_at_start() -> None:
    cid = str(uuid.uuid4())
    ok = parse_stdio_flags([f"orders={sys.executable} '{SERVER}' stdio", f"vip@{cid}=true"])
    assert ok[0] == McpStdioServer("orders", (sys.executable, SERVER, "stdio"))
    assert ok[1] == McpStdioServer("vip", ("true",), cid)
    for flag, words in [
        ("orders", "expected NAME=COMMAND"),
        ("my_server=true", "expected NAME=COMMAND"),  # '_' would blur <name>__<tool>
        ("orders=", "no command"),
        ("orders=/nonexistent/mcp-server --stdio", "not an executable here"),
        ("orders@42=true", "not a customer id"),
        ("orders='unclosed", "cannot read the command"),
    ]:
        with pytest.raises(McpConfigError, match=words):
            parse_stdio_flags([flag])
    with pytest.raises(McpConfigError, match="given twice"):
        parse_stdio_flags(["a=true", "a=false"])


async def _adds_on_the_server(plane: Plane, agent_id: str, secret: str) -> None:
    """The agent's "shop" server is offered and called, its ``secret`` kept from the agent."""
    call, config = await _start_call(plane, agent_id)
    assert "shop__add" in {t["name"] for t in config["tools"]}
    assert secret not in json.dumps(config)  # the agent process never sees it
    out = await plane.hooks.execute_tool(call, "shop__add", {"a": 20, "b": 22})
    assert out.result == {"result": 42}


async def test_a_customers_server_gets_the_headers_saved_with_its_agent(
    plane: Plane, token_server: str
) -> None:
    _, auth = await plane.customer()
    entry = {"type": "mcp", "name": "shop", "url": token_server}
    status, bare = await _agent(plane, auth, [entry])
    assert status == 201, bare
    status, keyed = await _agent(
        plane, auth, [{**entry, "headers": {"Authorization": f"Bearer {TOKEN}"}}]
    )
    assert status == 201, keyed
    await _adds_on_the_server(plane, keyed["id"], TOKEN)
    _, config = await _start_call(plane, bare["id"])  # refused by the server: no tools offered
    assert config["tools"] == []
    for bad, field in [
        ({**entry, "headers": {"X-Key": "a\r\nInjected: 1"}}, "tools[0].headers.X-Key"),
        ({"type": "mcp", "name": "orders", "headers": {"X-Key": "k"}}, "tools[0]"),
    ]:
        status, body = await _agent(plane, auth, [bad])
        assert status == 400 and body["fields"][0]["field"] == field, body
    assert body["fields"][0]["message"] == "headers go to a url: a stdio server takes none"
    status, body = await _agent(plane, auth, [{**entry, "headers": {"X-Key": "a\nb"}}])
    assert (
        body["fields"][0]["message"] == "expected a header value on one line, up to 2000 characters"
    )


async def test_a_customers_server_behind_a_client_credentials_grant(
    plane: Plane, oauth_server: str
) -> None:
    _, auth = await plane.customer()
    grant = {
        "token_url": oauth_server.removesuffix("/mcp") + "/token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "orders",
    }
    entry = {"type": "mcp", "name": "shop", "url": oauth_server, "oauth": grant}
    status, agent = await _agent(plane, auth, [entry])
    assert status == 201, agent
    await _adds_on_the_server(plane, agent["id"], CLIENT_SECRET)
    status, wrong = await _agent(
        plane, auth, [{**entry, "oauth": {**grant, "client_secret": "not-it"}}]
    )
    assert status == 201, wrong
    _, config = await _start_call(plane, wrong["id"])
    assert config["tools"] == []  # refused at the token URL: the call starts without them
    for bad, message in [
        ({"type": "mcp", "name": "orders", "oauth": grant}, "oauth goes to a url"),
        (
            {**entry, "headers": {"authorization": "Bearer x"}},
            "an Authorization header or oauth, not both",
        ),
        ({**entry, "oauth": {**grant, "client_secret": ""}}, "at least 1 character"),
    ]:
        status, body = await _agent(plane, auth, [bad])
        assert status == 400 and message in json.dumps(body), body


async def test_a_transfer_to_another_agent_brings_that_agents_mcp_tools(plane: Plane) -> None:
    _, auth = await plane.customer()
    status, front = await _agent(plane, auth, ["transfer_call"])
    assert status == 201, front
    status, orders = await _agent(plane, auth, [{"type": "mcp", "name": "orders"}])
    assert status == 201, orders
    call, _ = await _start_call(plane, front["id"])
    before = await plane.hooks.execute_tool(call, "orders__add", {"a": 1, "b": 2})
    assert before.result["error"] == "unknown_tool"  # not the front desk's
    moved = await plane.hooks.execute_tool(
        call, "transfer_call", {"target": f"agent:{orders['id']}"}
    )
    assert moved.result == {"status": "transferred", "target": f"agent:{orders['id']}"}
    assert call.actions == [("switch_agent", orders["id"])]
    after = await plane.hooks.execute_tool(call, "orders__add", {"a": 1, "b": 2})
    assert after.result == {"result": 3}
