"""Long-lived MCP sessions: one per customer and server, shared by that customer's calls.

A session of its own per tool call costs a spawn and a handshake each time (about a second for a
Python stdio server on a loaded box): dead air on a phone call. Here a session is opened on first
use and kept while it is used, closed after ``idle_s`` without a request; requests run in their
callers' tasks, concurrently on the one session (JSON-RPC ids keep them apart), each under its
caller's deadline.

What goes wrong stays contained: a request that raises (a crash, a closed connection, garbage on
the wire) ends its session, and the requests still waiting on it are cancelled and told why; the
next request opens a fresh one. A server is keyed by its own identity, customer included
(:attr:`McpServer.owner`), so one customer's process or connection never serves another's call.
Bounded: at most ``max_sessions`` (the least recently used idle one is closed for a new one; when
all are busy, an operation gets a session of its own), ``max_requests`` at once on each.

The sessions' tasks belong to :meth:`McpPool.serve`'s nursery (the control plane's); without it
running, every operation gets a session of its own, as before.
"""

from __future__ import annotations

import logging
import math

import trio
from mcp import Client

from control.mcp_tools import McpServer, Operation, T, open_session, session_fault

log = logging.getLogger(__name__)


class McpSessionLost(Exception):
    """The session a request was waiting on ended (the server crashed, or answered garbage)."""


class _Pooled:
    def __init__(self, server: McpServer, idle_s: float) -> None:
        self.server = server
        self.idle_s = idle_s
        # ends the session once unused for idle_s: requests move its deadline
        self._idle = trio.CancelScope()
        self.client: Client | None = None
        self.ready = trio.Event()  # set once the session is up, or has failed to come up
        self.error: Exception | None = None
        self.faults: list[Exception] = []  # transport faults, recorded before the session ends
        self.in_use = 0
        self.last_used = trio.current_time()
        self.scope = trio.CancelScope()  # cancelled to close it: idle, evicted, broken
        self._waiters: set[trio.CancelScope] = set()

    async def hold(self) -> None:
        """The session's life, in the pool's nursery."""
        try:
            with self.scope:
                await open_session(self.server, self._open_until_idle, self.faults)
        except Exception as exc:  # spawn, handshake, transport: this session is over
            self.error = exc
            log.warning("mcp session ended", extra={"mcp": self.server.name, "error": repr(exc)})
        finally:
            self.client = None
            self.scope.cancel()  # marks it closed for the pool
            for waiter in self._waiters:
                waiter.cancel()
            self.ready.set()

    async def _open_until_idle(self, client: Client) -> None:
        self.client = client
        self.ready.set()
        if not self.in_use:
            self._idle.deadline = trio.current_time() + self.idle_s
        with self._idle:
            await trio.sleep_forever()

    @property
    def closed(self) -> bool:
        return self.scope.cancel_called

    async def request(self, operation: Operation[T]) -> T:
        self.in_use += 1  # from now: a session coming up slowly is not idle
        self._idle.deadline = math.inf
        try:
            await self.ready.wait()
            client = self.client
            if client is None:
                raise self._lost()
            with trio.CancelScope() as waiter:
                self._waiters.add(waiter)
                try:
                    return await operation(client)
                except Exception as exc:
                    self.scope.cancel()  # whatever broke, the next request gets a fresh session
                    if self.faults:  # the session was ended by garbage on the wire
                        raise self._lost() from exc
                    raise
                finally:
                    self._waiters.discard(waiter)
            raise self._lost()  # cancelled by the session's end, not by the caller
        finally:
            self.in_use -= 1
            self.last_used = trio.current_time()
            if not self.in_use:
                self._idle.deadline = self.last_used + self.idle_s

    def _lost(self) -> Exception:
        if self.faults:  # garbage on the wire, or our credentials refused
            return session_fault(self.faults)
        return McpSessionLost(repr(self.error) if self.error else "the session ended")


class McpPool:
    """:class:`control.mcp_tools.Sessions` over long-lived sessions."""

    def __init__(self, max_sessions: int = 32, idle_s: float = 60.0, max_requests: int = 16):
        self.max_sessions = max_sessions
        self.idle_s = idle_s
        self.max_requests = max_requests
        self._sessions: dict[McpServer, _Pooled] = {}
        self._nursery: trio.Nursery | None = None

    @property
    def open_sessions(self) -> int:
        return sum(not s.closed for s in self._sessions.values())

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None
                nursery.cancel_scope.cancel()

    async def run(self, server: McpServer, operation: Operation[T]) -> T:
        pooled = self._session_for(server)
        if pooled is None:  # not serving, or full of busy sessions: a session of its own
            return await open_session(server, operation)
        return await pooled.request(operation)

    def _session_for(self, server: McpServer) -> _Pooled | None:
        pooled = self._sessions.get(server)
        if pooled is not None and not pooled.closed:
            return pooled if pooled.in_use < self.max_requests else None
        if self._nursery is None:
            return None
        self._sessions = {k: s for k, s in self._sessions.items() if not s.closed}
        if len(self._sessions) >= self.max_sessions:
            idle = [s for s in self._sessions.values() if not s.in_use]
            if not idle:
                return None
            oldest = min(idle, key=lambda s: s.last_used)
            oldest.scope.cancel()
            del self._sessions[oldest.server]
        pooled = self._sessions[server] = _Pooled(server, self.idle_s)
        self._nursery.start_soon(pooled.hold)
        return pooled
