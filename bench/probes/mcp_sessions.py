"""MCP tool calls: a session of its own per call against a pooled, long-lived one.

Wall time of ``call_tool`` on the SDK-written test server over stdio (tests/control/mcp_server.py):
a session per call spawns the server and does the handshake every time; the pool
(control/mcp_pool.py) does that once, and later calls are one JSON-RPC round trip.

Run: ``python -m bench.probes.mcp_sessions --calls 10``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import trio

from control.mcp_pool import McpPool
from control.mcp_tools import ONE_SHOT, McpServer, Sessions, call_tool

SERVER = Path(__file__).parents[2] / "tests" / "control" / "mcp_server.py"


async def _timed(server: McpServer, sessions: Sessions, calls: int) -> list[float]:
    took_ms = []
    for _ in range(calls):
        started = time.perf_counter()
        outcome = await call_tool(server, "add", {"a": 1, "b": 2}, 60, sessions)
        assert not outcome.is_error, outcome
        took_ms.append((time.perf_counter() - started) * 1000)
    return took_ms


def _line(label: str, took_ms: list[float]) -> str:
    later = took_ms[1:]
    return (
        f"{label:<18} first {took_ms[0]:7.1f} ms   later: median {statistics.median(later):7.1f}"
        f" ms, max {max(later):7.1f} ms"
    )


async def main(calls: int) -> None:
    server = McpServer("orders", command=(sys.executable, str(SERVER), "stdio"), owner="bench")
    print(_line("session per call", await _timed(server, ONE_SHOT, calls)))
    pool = McpPool()
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.serve)
        print(_line("pooled session", await _timed(server, pool, calls)))
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10, help="tool calls each way (default 10)")
    trio.run(main, max(2, parser.parse_args().calls))
