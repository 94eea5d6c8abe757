"""Which agent a call's link goes to: the least-loaded healthy one of several.

``serve --agent-workers N`` runs N agent processes, each on a port of its own (``--agent-listen``'s
port + j), and ``--agent ws://a,ws://b`` names several agents run elsewhere. A new call goes to
the agent with the fewest live calls among the healthy ones; a call holds its :class:`AgentLease`
for as long as its agent link runs.

Why a port per agent and not one ``SO_REUSEPORT`` port: the kernel would hash each connection onto
a listener by its addresses, blind to how many calls each agent carries (an agent busy with five
long calls gets the next one as often as an idle one) and to an agent that is going away, and
serve's ready probe could not reach the one child it wants to ask. With a port each, serve chooses.

Health: an agent serve supervises is healthy while its supervisor holds it ready (it answered the
handshake as the child serve started), so a restarting agent gets no calls. An agent serve does not
supervise (a remote list; the media workers of ``--workers``, which share the parent's agents) is
healthy until a connect to it fails; it is then tried last for :data:`RETRY_AFTER_S`.

Pure bookkeeping (times are passed in); :func:`open_least_loaded` is the thin async loop over it.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import trio

from media.agent_client import AgentLinkError

RETRY_AFTER_S = 1.0  # an unreachable unsupervised agent is tried last for this long
WAIT_POLL_S = 0.05  # every supervised agent is restarting: look again this often
# Failures that say the agent is not there (a crashed or restarting process), so the call may try
# another agent at once; any other failure (a timeout, a refusal) ends the call as before.
UNREACHABLE = frozenset({"connect_failed", "handshake", "closed"})

T = TypeVar("T")


class AgentLease:
    """One call's share of an agent: counted live from the choice until :meth:`release`."""

    def __init__(self, pool: AgentPool, index: int) -> None:
        self.pool, self.index, self.url = pool, index, pool.urls[index]
        self._held = True

    def release(self) -> None:
        """The call's link to this agent is over (idempotent)."""
        if self._held:
            self._held = False
            self.pool.live_calls[self.index] -= 1

    async def held_while(
        self,
        run: Callable[..., Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """``run(task_status=...)`` (the call's agent link), released when it ends."""
        try:
            await run(task_status=task_status)
        finally:
            self.release()


class AgentPool:
    """The agents calls may go to, with each one's count of live calls."""

    def __init__(self, urls: Sequence[str], ready: Callable[[int], bool] | None = None) -> None:
        if not urls:
            raise ValueError("an agent pool needs at least one agent")
        self.urls = tuple(urls)
        self.live_calls = [0] * len(self.urls)
        self._ready = ready  # None: nobody supervises them (see the module docstring)
        self._down_until = [-math.inf] * len(self.urls)

    def lease(self, now: float, exclude: frozenset[int] = frozenset()) -> AgentLease | None:
        """The least-loaded healthy agent not in ``exclude``, counted as taken; None if there is
        none (every supervised one is restarting, or all were tried)."""
        candidates = [
            i
            for i in range(len(self.urls))
            if i not in exclude and (self._ready is None or self._ready(i))
        ]
        if not candidates:
            return None
        best = min(candidates, key=lambda i: (self._down_until[i] > now, self.live_calls[i], i))
        self.live_calls[best] += 1
        return AgentLease(self, best)

    def unreachable(self, index: int, now: float) -> None:
        """A connect to agent ``index`` failed: try the others first for a while."""
        self._down_until[index] = now + RETRY_AFTER_S

    @property
    def supervised(self) -> bool:
        return self._ready is not None


async def open_least_loaded(
    pool: AgentPool, open_link: Callable[[str], Awaitable[T]], wait_s: float
) -> tuple[T, AgentLease]:
    """``open_link`` to the least-loaded healthy agent; on a failure that says it is not there,
    the next one. With every supervised agent restarting, wait up to ``wait_s`` for one. Raises
    the last :class:`AgentLinkError` once every agent was tried, ``connect_timeout`` when none
    became ready in time."""
    tried: frozenset[int] = frozenset()
    last: AgentLinkError | None = None
    lease: AgentLease | None = None
    with trio.move_on_after(wait_s):
        # (Polled: readiness is the supervisors' state, changed by their own tasks.)
        while (lease := pool.lease(trio.current_time())) is None:  # noqa: ASYNC110
            await trio.sleep(WAIT_POLL_S)
    while lease is not None:
        try:
            return await open_link(lease.url), lease
        except AgentLinkError as exc:
            lease.release()
            if exc.reason not in UNREACHABLE:
                raise
            pool.unreachable(lease.index, trio.current_time())
            tried |= {lease.index}
            last = exc
            lease = pool.lease(trio.current_time(), tried)
        except BaseException:
            lease.release()
            raise
    if last is not None:
        raise last
    raise AgentLinkError("connect_timeout", f"no agent became ready within {wait_s} s")
