"""callbridge SIP nodes inside the test's Trio loop: serve_sip with its own env and hooks each."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import trio

from media.call import CallEnv
from media.config import HostPort, MediaConfig
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from sip.config import SipConfig
from sip.outbound import SipOutbound
from sip.server import serve_sip
from tests.media.conftest import RecordingHooks


@dataclass
class Node:
    port: int
    env: CallEnv
    hooks: RecordingHooks
    scope: trio.CancelScope
    rtp_ports: range
    outbound: SipOutbound

    async def originate(self, source: str = "+15550001", destination: str = "+15550002") -> str:
        return await self.outbound.originate(source, destination, {})

    def counter(self, name: str, **labels: str) -> float:
        value = self.env.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def stop(self) -> None:
        self.scope.cancel()


async def start_node(
    nursery: trio.Nursery,
    agent_url: str,
    hooks: RecordingHooks | None = None,
    port: int = 0,
    **sip: Any,
) -> Node:
    """A node on ``port`` (0: any free one), with RTP on a random range of 200 ports."""
    base = random.randrange(30_000, 39_000, 2)
    cfg = SipConfig(
        listen=HostPort("127.0.0.1", port), rtp_port_min=base, rtp_port_max=base + 198, **sip
    )
    media = MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=agent_url)
    hooks = hooks or RecordingHooks()
    env = CallEnv(config=media, hooks=hooks, metrics=MediaMetrics(), registry=CallRegistry())
    scope = trio.CancelScope()
    outbound = SipOutbound()

    async def run(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await serve_sip(env, cfg, outbound, task_status=task_status)

    port = await nursery.start(run)
    return Node(port, env, hooks, scope, range(base, base + 200), outbound)
