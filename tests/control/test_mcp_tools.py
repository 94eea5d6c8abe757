"""MCP servers as tools, against a real MCP server written with the official SDK
(tests/control/mcp_server.py) over stdio and over streamable HTTP: its tools listed with their
schemas, calls answered; a hang, a crash and garbage each give a clear tool error, and the next
call works."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from control.mcp_tools import McpServer, call_tool, list_tools
from tests.conftest import end_process

SERVER = str(Path(__file__).with_name("mcp_server.py"))
STDIO = McpServer("orders", command=(sys.executable, SERVER, "stdio"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TOKEN = "s3cret-token"


@contextmanager
def running_http_server(*extra: str) -> Iterator[str]:
    """tests/control/mcp_server.py over streamable HTTP; yields its URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, SERVER, "http", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "MCP server down"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        end_process(proc, 5)


@pytest.fixture
def http_server() -> Iterator[McpServer]:
    with running_http_server() as url:
        yield McpServer("orders", url=url)


@pytest.fixture
def token_server() -> Iterator[str]:
    """The server behind ``Authorization: Bearer TOKEN``; yields its URL."""
    with running_http_server(TOKEN) as url:
        yield url


async def _lists_and_calls(server: McpServer) -> None:
    tools = {t["name"]: t for t in await list_tools(server, 20)}
    assert set(tools) >= {"orders__add", "orders__lookup_order", "orders__hang"}
    schema = tools["orders__add"]["parameters"]
    assert schema["required"] == ["a", "b"] and schema["properties"]["a"]["type"] == "integer"
    assert tools["orders__lookup_order"]["description"] == "Look up an order's status by its number"
    outcome = await call_tool(server, "add", {"a": 2, "b": 3}, 20)
    assert (outcome.result, outcome.is_error) == ({"result": 5}, False)
    outcome = await call_tool(server, "fail", {}, 20)
    assert outcome.is_error and outcome.result["error"] == "tool_error"


async def test_stdio_server_tools_are_listed_and_called() -> None:
    await _lists_and_calls(STDIO)


async def test_streamable_http_server_tools_are_listed_and_called(
    http_server: McpServer,
) -> None:
    await _lists_and_calls(http_server)


async def test_a_hanging_tool_times_out_and_the_next_call_works() -> None:
    outcome = await call_tool(STDIO, "hang", {}, 2.0)
    assert outcome.is_error and outcome.result["error"] == "mcp_timeout"
    assert "did not answer within 2 s" in outcome.result["message"]
    assert (await call_tool(STDIO, "add", {"a": 1, "b": 1}, 20)).result == {"result": 2}


async def test_a_crashing_server_is_a_tool_error() -> None:
    outcome = await call_tool(STDIO, "crash", {}, 10.0)
    assert outcome.is_error and outcome.result["error"] in ("mcp_unavailable", "mcp_timeout")
    assert "orders" in outcome.result["message"]


async def test_a_server_answering_garbage_is_a_tool_error() -> None:
    garbage = McpServer("orders", command=(sys.executable, SERVER, "garbage"))
    outcome = await call_tool(garbage, "add", {"a": 1, "b": 2}, 20.0)
    assert outcome.result == {
        "error": "mcp_bad_answer",
        "message": "the orders service answered with something unreadable",
    }
    assert await list_tools(garbage, 20.0) == []


async def test_garbage_instead_of_an_answer_is_told_at_once_not_as_a_timeout() -> None:
    """The SDK only logs a line that is not JSON-RPC and goes on waiting: the agent was told
    the server was slow, after the whole deadline."""
    with trio.fail_after(15):  # the deadline given is 60 s
        outcome = await call_tool(STDIO, "garble", {}, 60.0)
    assert outcome.is_error and outcome.result["error"] == "mcp_bad_answer"
    assert (await call_tool(STDIO, "add", {"a": 1, "b": 1}, 20)).result == {"result": 2}


async def test_an_unreachable_url_or_missing_command_is_a_tool_error() -> None:
    gone = McpServer("orders", url=f"http://127.0.0.1:{_free_port()}/mcp")
    outcome = await call_tool(gone, "add", {}, 10.0)
    assert outcome.is_error and outcome.result["error"] == "mcp_unavailable"
    missing = McpServer("orders", command=("/nonexistent/mcp-server",))
    outcome = await call_tool(missing, "add", {}, 10.0)
    assert outcome.is_error and outcome.result["error"] == "mcp_unavailable"
    with pytest.raises(ValueError, match="not both"):
        McpServer("x", command=("a",), url="http://b/mcp")


async def test_a_stdio_servers_stderr_goes_into_our_log_not_onto_our_stderr(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """serve's stderr is its JSON log: the server's traceback for a failing tool used to land
    there as raw text."""
    with caplog.at_level("WARNING", logger="control.mcp_tools"):
        outcome = await call_tool(STDIO, "fail", {}, 20)
    assert outcome.is_error
    records = [r for r in caplog.records if r.msg == "mcp server stderr"]
    lines = [getattr(r, "line", "") for r in records]
    assert any("UnexpectedToolError: Error executing" in line for line in lines), lines
    assert {getattr(r, "mcp", "") for r in records} == {"orders"}
    assert "UnexpectedToolError" not in capfd.readouterr().err


async def test_a_url_server_gets_its_headers(token_server: str) -> None:
    bearer = (("Authorization", f"Bearer {TOKEN}"),)
    with_token = McpServer("orders", url=token_server, headers=bearer)
    assert "orders__add" in {t["name"] for t in await list_tools(with_token, 20)}
    assert (await call_tool(with_token, "add", {"a": 2, "b": 2}, 20)).result == {"result": 4}
    without = McpServer("orders", url=token_server)
    assert await list_tools(without, 20) == []
    outcome = await call_tool(without, "add", {"a": 2, "b": 2}, 20)
    assert outcome.is_error and outcome.result["error"] == "mcp_unavailable"
