"""``serve --workers N``: N media processes behind the same listeners, one box using its cores.

A ``serve`` process is one Trio thread: one core. With ``--workers N`` the parent process binds the
TCP listeners once (``--http``, which also carries the media WebSockets, and ``--audiosocket``),
applies migrations and mints the first key once, starts the one agent process the workers share,
then runs N copies of ``serve`` as its children, each handed the listening sockets. Every worker
accepts on the same sockets (pre-fork, as a classic web server does), so:

- a connection waits in one kernel accept queue that outlives any worker, and whichever worker is
  free takes it. With ``SO_REUSEPORT`` each worker would own a queue of its own: connections queued
  on a worker that dies are reset, and the kernel's hash ignores how busy a worker is;
- a bind failure is said once, by the parent, before anything starts.

Conference links are the exception: a link names the worker holding the conference's bridge
(only it has the link's ticket), so the parent also binds one listener per worker
(:func:`link_addresses`, ``--link-port``) and worker j advertises its own
(:func:`control.conference_links.link_base`).

SIP too: a SIP transaction or dialog lives in the process that holds it, and ``SO_REUSEPORT``
would hash a proxy in front (one source address) onto one worker. With ``--sip HOST:PORT`` the
parent binds one UDP socket per worker, worker j's on PORT+j, and worker j takes its calls' RTP
from slice j of ``--rtp-ports`` (:func:`sip.config.for_worker`); Kamailio's dispatcher list names
the N ports. The socket outlives the worker's restarts, so a restarted worker answers on the same
port, and a call placed through the API leaves from the port of the worker that took the request.

ARI too (:mod:`callbridge.ari_worker`): Asterisk sends a Stasis app's events to one subscriber,
so worker 0 alone runs the ARI app; the parent binds one more AudioSocket listener, handed to
worker 0 only, which the app names to Asterisk for each call's ExternalMedia, and the other
workers carry the requests that need the app (leg ``asterisk`` originates, Asterisk-mixed
conferences) to worker 0.

Each worker is a full node of the scale-out design (:mod:`control.nodes`): it holds its calls as
(node id, worker id), runs the control plane API beside them, and reaches calls on a sibling
through the call-command transport. Events, caches, command routing and heartbeats go through
Redis, exactly as between nodes, which is why more than one worker needs ``--redis``. A worker that
dies takes only its own calls (their connections close with its process). It is restarted after a
back-off (:class:`callbridge.supervisor.Backoff`) under the same worker id, and before it takes
calls it ends the rows it held (cause ``node_lost``, one ``call_hungup`` each: the UPDATE is
conditional, so a sibling that reaped them first through the lapsed heartbeat leaves it nothing).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from callbridge.ari_worker import ARI_WORKER
from callbridge.supervisor import Backoff, started_once, stop_process, watch_parent
from media.config import HostPort, MediaConfig

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024  # connections the kernel queues while every worker is busy
# A worker that exits with these before its first ready cannot start (a config error: 2; an
# exception at start, such as Redis refusing it: 1): restarting it would loop, so serve stops.
FATAL_AT_START = frozenset({1, 2})
READY_TIMEOUT_S = 60.0  # a worker imports the control plane and opens storage before it is ready
# parent to worker: ID,HTTP_FD,AUDIOSOCKET_FD,READY_FD,LINK_FD,SIP_FD,ARI_FD (-1: none; the last
# ones may be absent)
ROLE_ENV = "CALLBRIDGE_WORKER"
NO_FD = -1


@dataclass(frozen=True, slots=True)
class WorkerRole:
    """What a worker child was handed: its id and the inherited descriptors (``link_fd``: the
    listener of its own that conference links to the bridges it holds come to; ``sip_fd``: its
    own SIP UDP socket with ``--sip``, else :data:`NO_FD`; ``ari_fd``: with ``--ari``, worker 0's
    listener for the ARI app's ExternalMedia connections, else :data:`NO_FD`)."""

    worker_id: int
    http_fd: int
    audiosocket_fd: int
    ready_fd: int
    link_fd: int
    sip_fd: int = NO_FD
    ari_fd: int = NO_FD

    @classmethod
    def from_environ(cls) -> WorkerRole | None:
        """This process's role, if its parent started it as a worker (none for a plain serve).
        A role of five or six numbers reads as one from before ``sip_fd`` or ``ari_fd``."""
        text = os.environ.pop(ROLE_ENV, "")
        if not text:
            return None
        return cls(*(int(part) for part in text.split(",")))

    def __str__(self) -> str:
        fds = (self.http_fd, self.audiosocket_fd, self.ready_fd, self.link_fd, self.sip_fd)
        return ",".join(str(n) for n in (self.worker_id, *fds, self.ari_fd))

    def audiosocket(self) -> socket.socket:
        return socket.socket(fileno=self.audiosocket_fd)

    def sip(self) -> socket.socket | None:
        """This worker's own SIP socket, bound by the parent (:func:`bind_udp`), if any."""
        return None if self.sip_fd == NO_FD else socket.socket(fileno=self.sip_fd)

    def ari_media(self) -> socket.socket | None:
        """The ARI app's ExternalMedia listener, bound by the parent: worker 0's only."""
        return None if self.ari_fd == NO_FD else socket.socket(fileno=self.ari_fd)

    def say_ready(self) -> None:
        """Tell the parent this worker takes calls (its listeners and control plane are up)."""
        os.write(self.ready_fd, b"r")
        os.close(self.ready_fd)


def bind_tcp(address: HostPort) -> socket.socket:
    """A listening TCP socket the workers will share; ``OSError`` if the address is not ours."""
    return _bound(address, socket.SOCK_STREAM)


def bind_udp(address: HostPort) -> socket.socket:
    """A worker's own SIP UDP socket, bound here so that a port in use is said once, before any
    worker starts, and so that it outlives the worker's restarts (datagrams wait in it)."""
    return _bound(address, socket.SOCK_DGRAM)


def _bound(address: HostPort, kind: socket.SocketKind) -> socket.socket:
    """A socket bound to ``address`` (and listening, for a stream), closed if that fails."""
    infos = socket.getaddrinfo(
        address.host or None, address.port, type=kind, flags=socket.AI_PASSIVE
    )
    family, _, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        if kind == socket.SOCK_STREAM:
            sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def link_addresses(host: str, base: int, count: int) -> list[HostPort]:
    """Where each worker takes the conference links to the bridges it holds: worker j on
    ``host``:``base`` + j, or on a port the kernel picks where ``base`` is 0. A link names the
    worker holding the bridge; on the shared ``--http`` listener a sibling could take it."""
    return [HostPort(host, base + j if base else 0) for j in range(count)]


def shared_agent_args(cfg: MediaConfig) -> list[str]:
    """How a worker reaches the parent's agents: supervised agents are the parent's, so each
    worker is handed them as remote ones (``--agent`` listing them, ``--agent-workers 1``) with the
    parent's resolved link (``auto`` would read them as an operator's URLs and pick ws)."""
    return ["--agent", cfg.agent_url, "--agent-workers", "1", "--agent-link", cfg.link_kind]


def worker_command(
    argv: Sequence[str], role: WorkerRole, watch_fd: int, agent_args: Sequence[str]
) -> list[str]:
    """The parent's own command line, plus the shared agents (:func:`shared_agent_args`; the
    last ``--agent``, ``--agent-workers`` and ``--agent-link`` win). Its role travels in the
    environment (:data:`ROLE_ENV`), out of ``serve --help``."""
    cmd = [sys.executable, "-m", "callbridge.workers", str(watch_fd), *argv]
    return [*cmd, *agent_args]


class WorkerCannotStart(RuntimeError):
    """A worker exited before it was ever ready, for a reason a restart cannot fix."""


class WorkerPool:
    """Start ``count`` workers, report started once all are ready, restart any that exits."""

    def __init__(
        self,
        count: int,
        argv: Sequence[str],
        agent_args: Sequence[str],
        listeners: dict[str, socket.socket],
        links: Sequence[socket.socket],
        backoff: Callable[[], Backoff] = Backoff,
        sips: Sequence[socket.socket] = (),
        ari_media: socket.socket | None = None,
    ) -> None:
        self.count, self.argv, self.agent_args = count, list(argv), list(agent_args)
        self.http, self.audiosocket = listeners["http"], listeners["audiosocket"]
        self.links = list(links)  # worker j's own listener for conference links: links[j]
        self.sips = list(sips)  # with --sip, worker j's own SIP socket: sips[j]
        self.ari_media = ari_media  # with --ari, worker 0's ExternalMedia listener
        self._backoff = backoff
        self.pids: dict[int, int] = {}  # worker id -> pid of its running process
        self._ever_ready: set[int] = set()  # worker ids that have taken calls once

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for worker_id in range(self.count):
                await nursery.start(self._supervise, worker_id)
            task_status.started()

    async def _supervise(
        self, worker_id: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        backoff, on_ready = self._backoff(), started_once(task_status)
        while True:
            ran_s = await self._run_once(worker_id, on_ready)
            delay_s = backoff.next_delay_s(ran_s)
            log.error(
                "worker restarting",
                extra={"worker_id": worker_id, "restart_in_s": delay_s, "ran_s": round(ran_s, 1)},
            )
            await trio.sleep(delay_s)

    def _own_fds(self, worker_id: int) -> tuple[int, int, int]:
        """Worker ``worker_id``'s own sockets: its link listener, its SIP socket and (worker 0)
        the ARI media listener, each :data:`NO_FD` where it has none."""
        sip = self.sips[worker_id].fileno() if worker_id < len(self.sips) else NO_FD
        ari = self.ari_media
        ari_fd = ari.fileno() if ari is not None and worker_id == ARI_WORKER else NO_FD
        return self.links[worker_id].fileno(), sip, ari_fd

    async def _run_once(self, worker_id: int, on_ready: Callable[[], None]) -> float:
        """One worker process from start to exit; how long it ran after it was ready."""
        watch_r, watch_w = os.pipe()  # the worker's EOF when we are gone (watch_parent)
        ready_r, ready_w = os.pipe()
        shared = (self.http.fileno(), self.audiosocket.fileno())
        own = self._own_fds(worker_id)
        role = WorkerRole(worker_id, *shared, ready_w, *own)
        try:
            proc = await trio.lowlevel.open_process(
                worker_command(self.argv, role, watch_r, self.agent_args),
                pass_fds=(watch_r, ready_w, *shared, *(fd for fd in own if fd != NO_FD)),
                env={**os.environ, ROLE_ENV: str(role)},
            )
        except BaseException:
            os.close(watch_w)
            os.close(ready_r)
            raise
        finally:
            os.close(watch_r)
            os.close(ready_w)
        self.pids[worker_id] = proc.pid
        ready_at = trio.current_time()
        try:
            ready = await _wait_ready(ready_r, proc)
            if not ready and worker_id not in self._ever_ready:
                _refuse_fatal(worker_id, proc.returncode)
            if not ready and proc.returncode is None:
                return 0.0  # hung at start: stopped below, restarted after the back-off
            if ready:
                log.info("worker ready", extra={"worker_id": worker_id, "pid": proc.pid})
                self._ever_ready.add(worker_id)
                ready_at = trio.current_time()
                on_ready()
            code = await proc.wait()
            log.error(
                "worker exited", extra={"worker_id": worker_id, "pid": proc.pid, "code": code}
            )
            return trio.current_time() - ready_at if ready else 0.0
        finally:
            self.pids.pop(worker_id, None)
            with trio.CancelScope(shield=True):
                await stop_process(proc)
            os.close(watch_w)


def _refuse_fatal(worker_id: int, code: int | None) -> None:
    if code in FATAL_AT_START:
        raise WorkerCannotStart(
            f"worker {worker_id} exited with status {code} before it was ready (its log lines"
            " above say why)"
        )


async def _wait_ready(ready_fd: int, proc: trio.Process) -> bool:
    """True once the worker says it is ready; False if it exited (or gave up) first."""
    async with trio.lowlevel.FdStream(ready_fd) as ready:
        with trio.move_on_after(READY_TIMEOUT_S):
            if await ready.receive_some(1):
                return True
        if proc.returncode is None:
            log.error("worker did not become ready", extra={"pid": proc.pid})
    return False


if __name__ == "__main__":  # a worker: python -m callbridge.workers WATCH_FD serve ...
    watch_parent(int(sys.argv[1]))
    from callbridge.cli import main

    sys.exit(main(sys.argv[2:]))
