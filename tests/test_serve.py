"""`callbridge serve` as a user runs it: a real process, a supervised echo agent child, a call
over AudioSocket, HTTP health and metrics, and an agent restart after a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import psutil
import pytest
import trio

from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import best_snr_db, tone


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve() -> Iterator[tuple[subprocess.Popen[bytes], dict[str, int]]]:
    ports = {"http": free_port(), "audiosocket": free_port(), "agent": free_port()}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "callbridge",
            "serve",
            "--agent",
            "echo",
            "--http",
            f"127.0.0.1:{ports['http']}",
            "--audiosocket",
            f"127.0.0.1:{ports['audiosocket']}",
            "--agent-listen",
            f"127.0.0.1:{ports['agent']}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        yield proc, ports
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("serve did not stop on SIGTERM")


def http_json(port: int, path: str) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


async def wait_http(port: int) -> None:
    with trio.fail_after(60):
        while True:
            try:
                await trio.to_thread.run_sync(http_json, port, "/health")
                return
            except OSError:
                await trio.sleep(0.2)


async def one_echo_call(port: int) -> float:
    src = tone(700, 0.6)
    peer = await AsteriskPeer.connect(port)
    async with trio.open_nursery() as n:
        n.start_soon(peer.read_until_closed)
        await peer.play(src)
        with trio.move_on_after(5):
            while len(peer.audio()) < len(src):
                await trio.sleep(0.05)
        await peer.close()
    return best_snr_db(src, peer.audio(), max_delay=1500)[0]


@pytest.mark.slow
async def test_serve_answers_a_call_and_restarts_a_crashed_agent(
    serve: tuple[subprocess.Popen[bytes], dict[str, int]],
) -> None:
    proc, ports = serve
    await wait_http(ports["http"])
    assert http_json(ports["http"], "/health")["status"] == "ok"
    assert await one_echo_call(ports["audiosocket"]) > 30

    children = psutil.Process(proc.pid).children()
    assert len(children) == 1 and "agent" in children[0].cmdline()
    children[0].kill()
    with trio.fail_after(30):  # the supervisor notices and starts a new agent
        while True:
            now = psutil.Process(proc.pid).children()
            if now and now[0].pid != children[0].pid:
                break
            await trio.sleep(0.1)
    with trio.fail_after(30):
        while True:
            try:
                if await one_echo_call(ports["audiosocket"]) > 30:
                    break
            except OSError:
                pass
            await trio.sleep(0.2)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/metrics", timeout=2).read()
    assert b'callbridge_calls_total{leg="audiosocket"}' in metrics
    assert proc.poll() is None
