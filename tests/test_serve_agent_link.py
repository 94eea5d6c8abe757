"""``--agent-link auto`` (the default) as a user runs serve: the agent processes serve starts
itself carry a media process's calls over one multiplexed connection, with ``--workers`` too (the
parent hands its workers the choice), while an agent the operator runs (``--agent ws://...``, which
may be a stock pipecat transport that does not speak the multiplexed protocol) gets one WebSocket
per call. Calls are counted by the agent itself (its handshake's ``Callbridge-Agent-Calls``) and
links by its established TCP connections."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
import trio
from websockets.sync.client import connect

from ai_pipeline.server import CALLS_HEADER, READY_PATH
from tests.conftest import require_service
from tests.media.asterisk_peer import AsteriskPeer
from tests.test_serve import free_port, ready_record, start_serve, stop_serve, wait_http
from tests.test_workers import ECHO_SNR_DB, _redis_up, echo_snr_db, start_workers, wait_ready

CALLS = 3


def agent_calls(port: int) -> int:
    """The calls the agent listening on ``port`` runs now, as it reports them itself."""
    with connect(f"ws://127.0.0.1:{port}{READY_PATH}", open_timeout=5) as ws:
        assert ws.response is not None
        return int(ws.response.headers[CALLS_HEADER])


def links_on(port: int) -> int:
    """Established TCP connections to ``port`` (the agent's end of each agent link)."""
    return sum(
        1
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
    )


async def wait_links(port: int, calls: int, links: range) -> None:
    """Until the agent on ``port`` runs ``calls`` calls over a number of connections in ``links``
    (a probe's connection may come and go meanwhile)."""
    with trio.fail_after(15):
        while True:
            seen = await trio.to_thread.run_sync(agent_calls, port)
            if seen == calls and links_on(port) in links:
                return
            await trio.sleep(0.1)


@contextlib.asynccontextmanager
async def echo_calls(audiosocket: int, count: int) -> AsyncIterator[list[AsteriskPeer]]:
    async with trio.open_nursery() as nursery:
        peers = []
        for _ in range(count):
            peer = await AsteriskPeer.connect(audiosocket)
            nursery.start_soon(peer.read_until_closed)
            peers.append(peer)
        yield peers
        for k, peer in enumerate(peers):
            assert await echo_snr_db(peer, 700 + 200 * k) > ECHO_SNR_DB
        for peer in peers:
            await peer.close()
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_serve_reaches_its_own_agent_over_one_multiplexed_link(tmp_path: Path) -> None:
    proc, ports = start_serve(tmp_path, "--agent", "echo", "--leg-idle-timeout", "300")
    try:
        await wait_http(ports["http"])
        assert ready_record(tmp_path / "serve.log")["agent_link"] == "mux"
        async with echo_calls(ports["audiosocket"], CALLS):
            await wait_links(ports["agent"], CALLS, range(1, 2))
    finally:
        stop_serve(proc)


def start_echo_agent(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    """``callbridge agent --echo`` run by the operator, not by serve."""
    with (tmp_path / "agent.log").open("ab") as log:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "callbridge", "agent"),
                *("--listen", f"127.0.0.1:{port}", "--echo"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


@pytest.mark.slow
async def test_serve_gives_an_agent_it_is_handed_one_websocket_per_call(tmp_path: Path) -> None:
    port = free_port()
    agent = start_echo_agent(tmp_path, port)
    proc, ports = start_serve(
        tmp_path, "--agent", f"ws://127.0.0.1:{port}", "--leg-idle-timeout", "300"
    )
    try:
        await wait_http(ports["http"])
        assert ready_record(tmp_path / "serve.log")["agent_link"] == "ws"
        async with echo_calls(ports["audiosocket"], CALLS):
            await wait_links(port, CALLS, range(CALLS, CALLS + 1))
    finally:
        stop_serve(proc)
        agent.terminate()
        agent.wait(15)


@pytest.mark.slow
async def test_media_workers_reach_the_parents_agent_multiplexed(tmp_path: Path) -> None:
    """``--workers 2``: each worker is handed the parent's agent as a ws:// URL, and the parent's
    resolved choice with it: four calls over at most two connections (one per worker)."""
    if not _redis_up():
        require_service("redis", "serve --workers 2 shares its state through Redis")
    proc, ports = start_workers(tmp_path)
    try:
        assert (await wait_ready(proc, tmp_path / "serve.log"))["agent_link"] == "mux"
        async with echo_calls(ports["audiosocket"], 4):
            await wait_links(ports["agent"], 4, range(1, 3))
    finally:
        stop_serve(proc)
