"""``callbridge serve --agent-workers 2`` as a user runs it: two supervised echo agents, calls
spread over them by live calls; an agent SIGKILLed mid-call takes only its own call (the other
agent's call keeps echoing), a call placed while it restarts lands on the survivor, and once it is
back it takes the next call."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import psutil
import pytest
import trio

from tests.conftest import require_service
from tests.media.asterisk_peer import AsteriskPeer
from tests.test_serve import free_port, stop_serve, wait_http
from tests.test_serve_agent_link import agent_calls
from tests.test_workers import (
    ECHO_SNR_DB,
    _redis_up,
    echo_snr_db,
    start_workers,
    wait_ready,
)


def ready_lines(log: Path) -> int:
    """serve's "agent ready" records so far (one per agent start that answered its probe)."""
    return log.read_text().count('"agent ready"')


def free_port_pair() -> int:
    """A port p with p and p + 1 both free (agent j listens on p + j)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise AssertionError("no two consecutive free ports")


def agents_by_port(serve_pid: int) -> dict[int, psutil.Process]:
    """serve's agent children by the port each listens on (``--listen HOST:PORT``)."""
    found = {}
    for child in psutil.Process(serve_pid).children():
        cmd = child.cmdline()
        if "agent" in cmd and "--listen" in cmd:
            found[int(cmd[cmd.index("--listen") + 1].rpartition(":")[2])] = child
    return found


async def calls_by_port(ports: Iterable[int]) -> dict[int, int]:
    """The calls each agent runs now, as it reports them itself (its handshake's answer counts
    them whatever the link: serve's own agents carry a media process's calls multiplexed)."""
    return {port: await trio.to_thread.run_sync(agent_calls, port) for port in ports}


async def wait_calls(want: dict[int, int]) -> None:
    with trio.fail_after(10):
        while await calls_by_port(want) != want:
            await trio.sleep(0.05)


async def wait_agents(serve_pid: int, ports: tuple[int, int]) -> dict[int, psutil.Process]:
    """Both agents up and answering: their ports listen (serve probes them before calls)."""
    with trio.fail_after(60):
        while True:
            agents = agents_by_port(serve_pid)
            if set(agents) == set(ports) and all(_listens(p) for p in ports):
                return agents
            await trio.sleep(0.1)


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def start_two_agents(
    tmp_path: Path, http: int, audiosocket: int, first: int
) -> subprocess.Popen[bytes]:
    with (tmp_path / "serve.log").open("ab") as log:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "callbridge", "serve", "--agent", "echo"),
                *("--agent-workers", "2", "--agent-listen", f"127.0.0.1:{first}"),
                *("--http", f"127.0.0.1:{http}", "--audiosocket", f"127.0.0.1:{audiosocket}"),
                *("--leg-idle-timeout", "300", "--db", f"sqlite:///{tmp_path / 'serve.db'}"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


@pytest.mark.slow
async def test_a_killed_agent_takes_only_its_calls_and_new_calls_go_to_the_survivor(
    tmp_path: Path,
) -> None:
    http, audiosocket, first = free_port(), free_port(), free_port_pair()
    a, b = first, first + 1
    log_path = tmp_path / "serve.log"
    proc = start_two_agents(tmp_path, http, audiosocket, first)
    peers: list[AsteriskPeer] = []
    try:
        await wait_http(http)
        agents = await wait_agents(proc.pid, (a, b))
        async with trio.open_nursery() as nursery:

            async def call() -> AsteriskPeer:
                peer = await AsteriskPeer.connect(audiosocket)
                nursery.start_soon(peer.read_until_closed)
                peers.append(peer)
                return peer

            on_a = await call()
            await wait_calls({a: 1, b: 0})  # the first call: the first agent
            on_b = await call()
            await wait_calls({a: 1, b: 1})  # the second: the one with no call
            assert await echo_snr_db(on_a, 700) > ECHO_SNR_DB
            assert await echo_snr_db(on_b, 900) > ECHO_SNR_DB

            killed = agents[a]
            killed.kill()
            await trio.to_thread.run_sync(killed.wait, 10)
            survivor_call = await call()  # while agent a restarts (>= 0.5 s): to b
            await wait_calls({b: 2})
            assert ready_lines(log_path) == 2, "agent a was back before the call: cannot tell"

            with trio.fail_after(10):  # the killed agent's call is hung up
                while on_a.closed_at is None:
                    await trio.sleep(0.05)
            assert await echo_snr_db(on_b, 1100) > ECHO_SNR_DB  # the other agent's call goes on
            assert await echo_snr_db(survivor_call, 1300) > ECHO_SNR_DB

            with trio.fail_after(60):  # agent a comes back as a new process, and is probed
                while (back := agents_by_port(proc.pid).get(a)) is None or back.pid == killed.pid:
                    await trio.sleep(0.1)
            with trio.fail_after(30):  # ready: it answered the supervisor's probe
                while ready_lines(log_path) < 3:
                    await trio.sleep(0.1)
            after = await call()  # the least loaded again: the restarted agent
            await wait_calls({a: 1, b: 2})
            assert await echo_snr_db(after, 700) > ECHO_SNR_DB
            for peer in peers:
                await peer.close()
            nursery.cancel_scope.cancel()
        assert proc.poll() is None
    finally:
        stop_serve(proc)
    assert ready_lines(log_path) == 3, log_path.read_text()[-3000:]


@pytest.mark.slow
async def test_media_workers_share_the_agent_workers(tmp_path: Path) -> None:
    """``--workers 2 --agent-workers 2``: the parent runs the two agents, each media worker is
    handed both and spreads its own calls over them. Four calls over two workers: one worker
    holds two or more, so both agents hold a call, and every call echoes."""
    if not _redis_up():
        require_service("redis", "serve --workers 2 shares its state through Redis")
    first = free_port_pair()
    a, b = first, first + 1
    proc, ports = start_workers(
        tmp_path, "--agent-workers", "2", "--agent-listen", f"127.0.0.1:{first}"
    )
    try:
        await wait_ready(proc, tmp_path / "serve.log")
        agents = agents_by_port(proc.pid)
        assert set(agents) == {a, b}  # the parent's children: no worker runs an agent of its own
        for child in psutil.Process(proc.pid).children():
            assert not [g for g in child.children() if "agent" in g.cmdline()]
        async with trio.open_nursery() as nursery:
            peers = []
            for _ in range(4):
                peer = await AsteriskPeer.connect(ports["audiosocket"])
                nursery.start_soon(peer.read_until_closed)
                peers.append(peer)
            with trio.fail_after(10):
                while sum((counts := await calls_by_port((a, b))).values()) < 4:
                    await trio.sleep(0.05)
            assert min(counts.values()) >= 1, counts
            for k, peer in enumerate(peers):
                assert await echo_snr_db(peer, 700 + 200 * k) > ECHO_SNR_DB
            for peer in peers:
                await peer.close()
            nursery.cancel_scope.cancel()
    finally:
        stop_serve(proc)
