"""An agent's MCP tools on a real call: an AudioSocket caller, the media core, ``callbridge agent``
(its own process, Whisper hearing the caller) with an OpenAI-compatible LLM, the control plane
(API, storage, tool executor) and a real MCP server written with the official SDK
(tests/control/mcp_server.py), over stdio (the operator's) and streamable HTTP (the customer's).

The LLM is the one fake, at its network boundary: a loopback server speaking OpenAI's streaming
chat completions, which asks for an MCP tool when the caller speaks and then says what the tool
answered. What it is sent shows the agent offered the MCP tools with their schemas and got the
server's result back; what the caller's agent says shows it went all the way round.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from control.mcp_servers import McpStdioServer
from control.mcp_tools import McpServer
from media.audiosocket_server import serve_audiosocket
from media.call import CallEnv
from media.config import HostPort, MediaConfig
from tests.ai_pipeline.test_openai_engine import _chunk, _text_stream
from tests.control.conftest import open_plane_for
from tests.control.test_mcp_tools import SERVER, http_server
from tests.e2e.test_agent_call import Caller, caller_utterance, wait_for
from tests.e2e.test_agent_tools import Line, agent_said, call_agent, data

__all__ = ["http_server"]  # the fixture, used by name below
pytestmark = pytest.mark.slow
TURNS = [  # what the LLM asks for at each caller turn
    ("orders__add", {"a": 19, "b": 23}),  # stdio, the operator's server
    ("shop__lookup_order", {"order_number": "A7"}),  # streamable HTTP, the customer's
]


class FakeLLM:
    """``POST /v1/chat/completions`` streamed: a tool call per caller turn, then a reply that
    quotes the tool's result."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._serve, listeners)

    async def _serve(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        match = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
        assert match is not None, head
        while len(body) < int(match[1]):
            body += await stream.receive_some(65536)
        request = json.loads(body)
        self.requests.append(request)
        last = request["messages"][-1]
        if last["role"] == "tool":
            events = _text_stream(f"The system says {json.loads(last['content'])['result']}.")
        else:
            turn = sum(m["role"] == "tool" for m in request["messages"])
            name, arguments = TURNS[min(turn, len(TURNS) - 1)]
            call = {"index": 0, "id": f"call_{turn}", "type": "function"}
            call["function"] = {"name": name, "arguments": json.dumps(arguments)}
            events = [
                _chunk({"role": "assistant", "content": None, "tool_calls": [call]}),
                _chunk({}, "tool_calls"),
                b"data: [DONE]\n\n",
            ]
        head_out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        await stream.send_all(head_out + b"connection: close\r\n\r\n" + b"".join(events))
        await stream.aclose()


@pytest.fixture
async def mcp_line(
    nursery: trio.Nursery, offline_agent: str, tmp_path: Path
) -> AsyncIterator[Line]:
    """The control plane with the operator's stdio MCP server, the media core before the agent."""
    stdio = (McpStdioServer("orders", (sys.executable, SERVER, "stdio")),)
    overrides = {"mcp_stdio": stdio, "mcp_list_timeout_s": 20.0, "mcp_call_timeout_s": 20.0}
    async with await open_plane_for("sqlite", tmp_path, **overrides) as plane:
        customer_id, auth = await plane.customer()
        env = CallEnv(
            MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=offline_agent),
            plane.hooks,
            plane.media_metrics,
            plane.calls,
        )
        yield Line(plane, auth, customer_id, await nursery.start(serve_audiosocket, env))
        nursery.cancel_scope.cancel()


async def test_the_llm_calls_mcp_tools_over_both_transports_during_a_call(
    mcp_line: Line, http_server: McpServer, nursery: trio.Nursery
) -> None:
    llm = FakeLLM()
    await nursery.start(llm.run)
    engines = {
        "llm": "openai",
        "options": {"llm": {"base_url": f"http://127.0.0.1:{llm.port}/v1", "model": "m"}},
    }
    tools = [
        "end_call",
        {"type": "mcp", "name": "orders", "tools": ["add"]},
        {"type": "mcp", "name": "shop", "url": http_server.url, "tools": ["lookup_order"]},
    ]
    peer = await call_agent(mcp_line, tools=tools, engines=engines)
    caller = Caller(peer)
    async with trio.open_nursery() as call:
        call.start_soon(peer.read_until_closed)
        call.start_soon(caller.run)
        await wait_for(lambda: caller.heard(), 60, "the greeting")
        await caller.wait_until_quiet()
        (call_row,) = await mcp_line.rows("calls", customer_id=mcp_line.customer_id)
        caller.say(caller_utterance("billing_question.wav"))
        await agent_said(mcp_line, call_row["id"], "The system says 42.", 60)
        caller.say(caller_utterance("opening_hours.wav"))
        await agent_said(mcp_line, call_row["id"], "order A7 shipped on Monday", 60)
        await peer.close()
        call.cancel_scope.cancel()

    # The LLM was offered the MCP tools with the servers' schemas (and only those named)...
    offered = {t["function"]["name"]: t["function"] for t in llm.requests[0]["tools"]}
    assert set(offered) == {"end_call", "orders__add", "shop__lookup_order"}
    assert offered["orders__add"]["parameters"]["required"] == ["a", "b"]
    # ...and was given back each server's answer as the tool's result.
    results = [m["content"] for r in llm.requests for m in r["messages"] if m["role"] == "tool"]
    assert json.loads(results[0]) == {"result": 42}
    assert json.loads(results[-1]) == {"result": "order A7 shipped on Monday"}
    events = await mcp_line.rows("events", customer_id=mcp_line.customer_id, type="tool_called")
    called = [(data(e)["name"], data(e)["is_error"]) for e in events]
    assert called == [("orders__add", False), ("shop__lookup_order", False)], called
