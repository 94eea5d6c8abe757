"""``serve`` calls its agent ready only after a real agent-link handshake with its own child, says
so in ``/ready``, stops with the address when the agent cannot listen, and backs off between
restarts. (Issue 11 item 5: a plain HTTP server on the agent port was called "agent ready".)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import psutil
import pytest
import trio

from ai_pipeline.echo import echo_call
from bench.server import free_port
from callbridge.agent_probe import AgentNotReady, probe_agent, probe_remote_agent
from callbridge.supervisor import Backoff
from media.config import HostPort
from tests.media.conftest import agent_in_thread
from tests.test_serve import start_serve, stop_serve, wait_http

ROOT = Path(__file__).resolve().parent.parent


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from a plain HTTP server\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def plain_http_server() -> Iterator[int]:
    """A stranger on a port: answers every GET with 200 and a page, never a WebSocket."""
    server = HTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def log_records(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


def run_serve(
    tmp_path: Path, *args: str, timeout_s: float = 90
) -> subprocess.CompletedProcess[str]:
    """``serve --agent echo`` on free ports unless ``args`` names them; runs until it exits."""
    ports = {
        "--http": f"127.0.0.1:{free_port()}",
        "--audiosocket": f"127.0.0.1:{free_port()}",
        "--agent-listen": f"127.0.0.1:{free_port()}",
    }
    flags = dict(zip(args[::2], args[1::2], strict=True))
    command = [sys.executable, "-m", "callbridge", "serve", "--agent", "echo"]
    for flag, value in {**ports, **flags}.items():
        command += [flag, value]
    command += ["--db", f"sqlite:///{tmp_path / 'cb.db'}"]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False
    )


# --- the probe ------------------------------------------------------------------------------


async def test_a_plain_http_server_is_not_an_agent() -> None:
    with plain_http_server() as port, pytest.raises(AgentNotReady) as caught:
        await probe_agent(HostPort("127.0.0.1", port), os.getpid())
    assert f"no agent-link handshake on 127.0.0.1:{port}" in str(caught.value)


async def test_the_agent_answers_its_handshake_with_its_pid() -> None:
    with agent_in_thread(echo_call) as url:  # the agent server in this process: our pid
        listen = HostPort.parse(url.removeprefix("ws://"), "url")
        await probe_agent(listen, os.getpid())
        with pytest.raises(AgentNotReady, match=f"agent pid {os.getpid()}"):
            await probe_agent(listen, os.getpid() + 1)  # an orphan of an earlier serve, say


async def test_nothing_listening_is_not_ready() -> None:
    listen = HostPort("127.0.0.1", free_port())
    with pytest.raises(AgentNotReady, match=str(listen)):
        await probe_agent(listen, os.getpid())
    with pytest.raises(AgentNotReady, match=str(listen)):
        await probe_remote_agent(f"ws://{listen}")


# --- restarts -------------------------------------------------------------------------------


def test_restarts_back_off_exponentially_to_a_cap_and_reset_after_a_stable_run() -> None:
    backoff = Backoff(first_s=0.5, cap_s=30.0, stable_s=60.0)
    delays = [backoff.next_delay_s(ran_s=1.0) for _ in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.next_delay_s(ran_s=600.0) == 0.5  # it had run fine: a fresh start
    assert backoff.next_delay_s(ran_s=0.0) == 1.0


# --- serve ----------------------------------------------------------------------------------


def test_serve_does_not_adopt_a_plain_http_server_on_the_agent_port(tmp_path: Path) -> None:
    with plain_http_server() as port:
        done = run_serve(tmp_path, "--agent-listen", f"127.0.0.1:{port}")
    assert done.returncode == 1, done.stderr[-2000:]
    records = log_records(done.stderr)
    messages = [str(r["msg"]) for r in records]
    assert "agent ready" not in messages and "callbridge ready" not in messages
    errors = [m for r, m in zip(records, messages, strict=True) if r["level"] == "error"]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0], errors


def test_an_agent_that_cannot_bind_stops_serve_naming_the_address(tmp_path: Path) -> None:
    """Bound but not listening (a program between bind and listen): connecting is refused, so
    only the agent's own bind fails. That is fatal at once, not a restart loop."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        port = squatter.getsockname()[1]
        done = run_serve(tmp_path, "--agent-listen", f"127.0.0.1:{port}")
    assert done.returncode == 1, done.stderr[-2000:]
    messages = [str(r["msg"]) for r in log_records(done.stderr)]
    fatal = [m for m in messages if m.startswith("callbridge cannot start")]
    assert len(fatal) == 1 and f"cannot listen on 127.0.0.1:{port}" in fatal[0], messages
    assert "--agent-listen" in fatal[0]
    assert not any("restarting" in m for m in messages)  # no crash loop
    assert "Traceback" not in done.stderr


def ready_status(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
async def test_ready_follows_the_agent_and_restarts_back_off(tmp_path: Path) -> None:
    proc, ports = start_serve(tmp_path, "--agent", "echo")
    try:
        await wait_http(ports["http"])
        status, body = await trio.to_thread.run_sync(ready_status, ports["http"])
        assert status == 200 and body["checks"] == {"db": "ok", "agent": "ok"}, body
        seen_down = []
        for _ in range(2):  # two crashes in a row: the second restart waits twice as long
            (agent,) = psutil.Process(proc.pid).children()
            agent.kill()
            with trio.fail_after(60):
                while True:  # not ready while the agent is down, ready again once it is back
                    status, body = await trio.to_thread.run_sync(ready_status, ports["http"])
                    checks = body["checks"]
                    assert isinstance(checks, dict)
                    if status == 503:
                        seen_down.append(checks["agent"])
                    elif seen_down and status == 200:
                        break
                    await trio.sleep(0.05)
    finally:
        stop_serve(proc)
    assert seen_down and all(str(check).startswith("error") for check in seen_down)
    records = log_records((tmp_path / "serve.log").read_text())
    waits = [r["restart_in_s"] for r in records if r["msg"] == "agent restarting"]
    assert waits == [0.5, 1.0], waits
