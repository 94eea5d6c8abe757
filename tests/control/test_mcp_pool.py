"""Long-lived MCP sessions (control/mcp_pool.py) against the SDK-written test server over stdio:
one process serves a customer's calls in turn and side by side, never another customer's; a crash
or garbage ends that session only and the next call gets a fresh one; idle sessions close; the
pool stays within its bound."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import AsyncIterator

import pytest
import trio

from control.mcp_pool import McpPool
from control.mcp_tools import McpServer, call_tool
from tests.control.test_mcp_tools import SERVER

ANN = McpServer("orders", command=(sys.executable, SERVER, "stdio"), owner="customer-ann")
BOB = dataclasses.replace(ANN, owner="customer-bob")


@pytest.fixture
async def pool(nursery: trio.Nursery) -> AsyncIterator[McpPool]:
    pool = McpPool(max_sessions=4, idle_s=30.0)
    await nursery.start(pool.serve)
    yield pool


async def pid(pool: McpPool, server: McpServer = ANN) -> int:
    outcome = await call_tool(server, "pid", {}, 30, pool)
    assert not outcome.is_error, outcome
    return int(outcome.result["result"])


async def test_one_process_serves_a_customers_calls_and_only_theirs(pool: McpPool) -> None:
    first = await pid(pool)
    assert await pid(pool) == first  # no spawn per call
    assert await pid(pool, BOB) != first  # another customer: a process of its own
    assert pool.open_sessions == 2


async def test_a_crash_or_garbage_ends_that_session_and_the_next_call_gets_a_fresh_one(
    pool: McpPool,
) -> None:
    before = await pid(pool)
    crash = await call_tool(ANN, "crash", {}, 30, pool)
    assert crash.is_error and crash.result["error"] == "mcp_unavailable", crash
    after_crash = await pid(pool)
    assert after_crash != before
    garble = await call_tool(ANN, "garble", {}, 30, pool)
    assert garble.result["error"] == "mcp_bad_answer", garble
    assert await pid(pool) not in (before, after_crash)


async def test_calls_share_a_session_side_by_side(pool: McpPool) -> None:
    """A tool that hangs holds up its own call only: another call on the same session is
    answered meanwhile, and the session outlives the hang's timeout."""
    first = await pid(pool)
    done: list[str] = []

    async def hang() -> None:
        outcome = await call_tool(ANN, "hang", {}, 4.0, pool)
        assert outcome.result["error"] == "mcp_timeout"
        done.append("hang")

    async def add() -> None:
        outcome = await call_tool(ANN, "add", {"a": 1, "b": 2}, 30, pool)
        assert outcome.result == {"result": 3}
        done.append("add")

    async with trio.open_nursery() as both:
        both.start_soon(hang)
        await trio.sleep(0.5)  # the hang is in flight
        both.start_soon(add)
    assert done == ["add", "hang"]
    assert await pid(pool) == first


async def test_idle_sessions_close_and_the_pool_stays_bounded(nursery: trio.Nursery) -> None:
    pool = McpPool(max_sessions=1, idle_s=1.0)
    await nursery.start(pool.serve)
    ann = await pid(pool)
    bob = await pid(pool, BOB)  # the pool is full: Ann's idle session makes way
    assert bob != ann and pool.open_sessions == 1
    with trio.fail_after(10):
        while pool.open_sessions:
            await trio.sleep(0.1)
    assert await pid(pool, BOB) != bob  # it was closed: a new process
