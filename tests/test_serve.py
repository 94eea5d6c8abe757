"""`callbridge serve` as a user runs it: a real process, a supervised agent child, a call over
AudioSocket, HTTP health and metrics, an agent restart after a crash, and on defaults (no
``--agent``) the offline voice agent greeting the caller."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import soxr
import trio

from ai_pipeline.engines.models import ModelStore
from ai_pipeline.engines.stt import transcribe_pcm16
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import best_snr_db, tone


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(
    tmp_path: Path, *agent_args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """``callbridge serve`` on free ports, its SQLite database in ``tmp_path``; ``env`` is its
    whole environment (default: ours)."""
    ports = {"http": free_port(), "audiosocket": free_port(), "agent": free_port()}
    # A file, not a pipe nobody reads: the agent's logs would fill a pipe and block serve.
    with (tmp_path / "serve.log").open("ab") as log:  # a restart appends
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "callbridge",
                "serve",
                *agent_args,
                "--http",
                f"127.0.0.1:{ports['http']}",
                "--audiosocket",
                f"127.0.0.1:{ports['audiosocket']}",
                "--agent-listen",
                f"127.0.0.1:{ports['agent']}",
                "--db",
                f"sqlite:///{tmp_path / 'serve.db'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ} if env is None else env,
        )
    return proc, ports


def stop_serve(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("serve did not stop on SIGTERM")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, int]]]:
    proc, ports = start_serve(tmp_path, "--agent", "echo")  # echo: quick to start
    try:
        yield proc, ports
    finally:
        stop_serve(proc)


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


def json_log(log: Path) -> list[dict[str, Any]]:
    """serve's log, every line a JSON object (one format: its agent's and pipecat's lines too)."""
    records = []
    for number, line in enumerate(log.read_text().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"serve.log line {number} is not JSON: {line[:200]!r}") from None
    return records


def ready_record(log: Path) -> dict[str, Any]:
    """serve's structured "callbridge ready" log record."""
    for line in log.read_text().splitlines():
        if '"callbridge ready"' in line:
            return json.loads(line)  # type: ignore[no-any-return]
    raise AssertionError(f"no ready record in {log.read_text()[-2000:]}")


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
    tmp_path: Path,
) -> None:
    proc, ports = serve
    await wait_http(ports["http"])
    assert http_json(ports["http"], "/health")["status"] == "ok"
    assert ready_record(tmp_path / "serve.log")["frozen_objects"] > 10_000  # callbridge.heap
    starts = [r for r in json_log(tmp_path / "serve.log") if "Running on" in r["msg"]]
    assert len(starts) == 1, starts  # hypercorn's start line, once, through our handler
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


@pytest.mark.slow
async def test_serve_on_defaults_answers_with_the_offline_agent(tmp_path: Path) -> None:
    """No --agent: a new user's first call gets the offline voice agent, which greets first."""
    proc, ports = start_serve(tmp_path)
    try:
        await wait_http(ports["http"])  # serve opens HTTP once its agent listens
        peer = await AsteriskPeer.connect(ports["audiosocket"])
        async with trio.open_nursery() as n:
            n.start_soon(peer.read_until_closed)
            n.start_soon(peer.play, bytes(320 * 50 * 30))  # up to 30 s of a silent caller
            with trio.fail_after(60):  # the greeting, then a second of quiet after it
                while not (
                    peer.audio_frames() and trio.current_time() - peer.audio_frames()[-1].t > 1
                ):
                    await trio.sleep(0.1)
            await peer.close()
            n.cancel_scope.cancel()
        children = psutil.Process(proc.pid).children()
        assert len(children) == 1 and "--echo" not in children[0].cmdline()
    finally:
        stop_serve(proc)
    pipecat = [r for r in json_log(tmp_path / "serve.log") if r["logger"].startswith("pipecat")]
    assert any("Pipecat" in r["msg"] for r in pipecat), "pipecat's banner, as a JSON record"
    greeting = np.frombuffer(peer.audio(), dtype="<i2")
    assert greeting.size / 8000 > 1.0  # "Hello, how can I help you?" is well over a second
    assert float(np.sqrt(np.mean(greeting.astype(np.float64) ** 2))) > 300  # speech, not hiss
    pcm16 = np.asarray(soxr.resample(greeting, 8000, 16000), dtype="<i2").tobytes()
    heard = transcribe_pcm16(ModelStore().whisper(), pcm16).lower()
    assert "help" in heard, heard
