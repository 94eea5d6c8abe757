"""MCP servers as tools, against a real MCP server written with the official SDK
(tests/control/mcp_server.py) over stdio and over streamable HTTP: its tools listed with their
schemas, calls answered; a hang, a crash and garbage each give a clear tool error, and the next
call works."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
import trio

from control.mcp_auth import TOKENS, OAuthClient
from control.mcp_pool import McpPool
from control.mcp_tools import ONE_SHOT, McpServer, call_tool, list_tools
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
    assert outcome.result == {
        "error": "mcp_unauthorized",
        "message": "the orders service refused our credentials: HTTP 401 Unauthorized from"
        " the MCP server",
    }


CLIENT_ID, CLIENT_SECRET = "callbridge", "client-s3cret"


@pytest.fixture
def oauth_server() -> Iterator[str]:
    """The server behind tokens of a client-credentials grant (its /token); yields its URL."""
    with running_http_server("oauth", f"{CLIENT_ID}:{CLIENT_SECRET}") as url:
        yield url


def _granted(url: str, secret: str = CLIENT_SECRET) -> McpServer:
    grant = OAuthClient(url.removesuffix("/mcp") + "/token", CLIENT_ID, secret, "orders")
    return McpServer("orders", url=url, oauth=grant)


async def test_a_client_credentials_grant_gets_keeps_and_renews_its_token(
    oauth_server: str, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server, pool = _granted(oauth_server), McpPool()
    await nursery.start(pool.serve)
    fetched = TOKENS.fetched
    assert "orders__add" in {t["name"] for t in await list_tools(server, 20)}
    for sessions in (ONE_SHOT, pool, pool):
        outcome = await call_tool(server, "add", {"a": 2, "b": 2}, 20, sessions)
        assert outcome.result == {"result": 4}
    assert TOKENS.fetched == fetched + 1  # one token served every session
    revoked = await trio.to_thread.run_sync(
        lambda: httpx2.post(oauth_server.removesuffix("/mcp") + "/revoke")
    )
    assert revoked.status_code == 200
    for sessions in (ONE_SHOT, pool):  # a 401: a fresh token, and the call goes through
        outcome = await call_tool(server, "add", {"a": 2, "b": 3}, 20, sessions)
        assert outcome.result == {"result": 5}
    assert TOKENS.fetched == fetched + 2
    said = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert caplog.records and CLIENT_SECRET not in said and "tok-" not in said
    assert CLIENT_SECRET not in repr(server)


async def test_refused_client_credentials_are_a_clear_tool_error(
    oauth_server: str, nursery: trio.Nursery
) -> None:
    wrong, pool = _granted(oauth_server, "not-the-secret"), McpPool()
    await nursery.start(pool.serve)
    assert await list_tools(wrong, 20) == []
    for sessions in (ONE_SHOT, pool):
        outcome = await call_tool(wrong, "add", {"a": 2, "b": 2}, 20, sessions)
        assert outcome.result == {
            "error": "mcp_unauthorized",
            "message": "the orders service refused our credentials: the token URL refused"
            " client 'callbridge': HTTP 401 invalid_client",
        }
    right = await call_tool(_granted(oauth_server), "add", {"a": 1, "b": 1}, 20, pool)
    assert right.result == {"result": 2}  # the pool's refused session did not stay
