"""Fixtures for end-to-end tests: the real agent process (``callbridge agent``) on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import end_process

AGENT_START_TIMEOUT_S = 120.0  # imports pipecat and loads four models; slow on a loaded box


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + AGENT_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"agent exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"agent did not listen within {AGENT_START_TIMEOUT_S} s")


@pytest.fixture(scope="session")
def offline_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``callbridge agent`` (the offline pipecat pipeline) as its own process; yields its URL.

    The agent loads its models before it listens, so once the port accepts, a call is served
    at full speed: the tests' deadlines never include model loading.
    """
    port = free_port()
    log_path = tmp_path_factory.mktemp("agent") / "agent.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "callbridge", "agent", "--listen", f"127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        try:
            wait_listening(proc, port, log_path)
            yield f"ws://127.0.0.1:{port}"
        finally:
            end_process(proc, 10)
