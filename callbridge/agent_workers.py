"""``serve --agent-workers N``: N supervised agent processes, so a box uses its cores for the agent.

An agent process is one asyncio thread: one core. Each of the N agents is an
:class:`~callbridge.supervisor.AgentSupervisor` of its own, on its own port (``--agent-listen``'s
port + j; :mod:`media.agent_pool` says why not one ``SO_REUSEPORT`` port): probed ready before
serve takes a call, restarted with its own back-off when it dies, and an exit a restart cannot fix
(``EX_CONFIG``, ``EX_CANNOT_LISTEN``) stops serve with the reason. A crashed agent takes only its
own calls (their links close); new calls go to the ready ones (:class:`media.agent_pool.AgentPool`
asks :meth:`AgentWorkers.is_ready`).

With ``--workers M`` the parent supervises the N agents and the M media workers share them: each
worker is handed the N addresses as ``--agent ws://...,ws://...``, with the parent's resolved
``--agent-link`` (``auto`` is ``mux`` to these: :func:`callbridge.workers.shared_agent_args`)
and spreads its own calls over them by its own counts (the kernel spreads calls evenly over the
workers, so the sums even out).
Sharing keeps the agent count what the operator sized to the cores, whatever M is.
"""

from __future__ import annotations

import trio

from callbridge.agent_probe import AgentNotReady
from callbridge.supervisor import AgentSupervisor
from media.agent_pool import AgentPool
from media.config import MediaConfig


class AgentWorkers:
    """The supervised agents of one serve, in the order of their ports."""

    def __init__(self, cfg: MediaConfig) -> None:
        self.urls = cfg.agent_urls
        self.supervisors = [AgentSupervisor(cfg.agent_mode, listen) for listen in cfg.agent_listens]

    def is_ready(self, index: int) -> bool:
        """Agent ``index`` answered its handshake and has not exited since."""
        return self.supervisors[index].ready

    def pool(self) -> AgentPool:
        """The calls' view of these agents: a restarting one gets none."""
        return AgentPool(self.urls, self.is_ready)

    async def check_ready(self) -> None:
        """``/ready``'s agent check: at least one agent answers its handshake now."""
        reasons = []
        for supervisor in self.supervisors:
            try:
                await supervisor.check_ready()
                return
            except AgentNotReady as exc:
                reasons.append(str(exc))
        raise AgentNotReady("; ".join(reasons))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every agent at once, report started when all are ready, keep each running."""
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as starting:
                for supervisor in self.supervisors:
                    starting.start_soon(nursery.start, supervisor.run)
            task_status.started()
