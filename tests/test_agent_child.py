"""``serve``'s agent child never outlives it, and ``serve`` never adopts a stranger on its agent
port: a SIGKILLed serve takes its agent with it, and a serve restarted on the same ports answers
calls with its own new agent; a port already taken makes serve refuse to start, with the reason."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

import psutil
import trio

from tests.test_serve import one_echo_call, start_serve, stop_serve, wait_http

ROOT = Path(__file__).resolve().parent.parent


def _agent_of(serve_pid: int) -> psutil.Process:
    (child,) = psutil.Process(serve_pid).children()
    assert "agent" in child.cmdline()
    return child


async def test_the_agent_dies_with_a_killed_serve_and_a_restart_gets_its_own(
    tmp_path: Path,
) -> None:
    proc, ports = start_serve(tmp_path, "--agent", "echo")
    try:
        await wait_http(ports["http"])
        agent = _agent_of(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # the agent sees its pipe to serve close, SIGTERMs itself (os._exit 5 s later at worst)
        gone, alive = await trio.to_thread.run_sync(psutil.wait_procs, [agent], 10)
        assert agent in gone and not alive, "the agent outlived its serve"
    finally:
        if proc.poll() is None:
            proc.kill()
    again = await trio.to_thread.run_sync(
        partial(subprocess.Popen, proc.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    )
    try:
        await wait_http(ports["http"])
        assert _agent_of(again.pid).pid != agent.pid
        assert await one_echo_call(ports["audiosocket"]) > 30  # its own agent answers
    finally:
        stop_serve(again)


def test_serve_refuses_an_agent_port_something_else_listens_on(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        command = [sys.executable, "-m", "callbridge", "serve", "--agent", "echo"]
        command += ["--agent-listen", f"127.0.0.1:{port}", "--http", "127.0.0.1:0"]
        command += ["--audiosocket", "127.0.0.1:0", "--db", f"sqlite:///{tmp_path / 'cb.db'}"]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"already listens on the agent port 127.0.0.1:{port}" in done.stderr
    assert "agent ready" not in done.stderr
