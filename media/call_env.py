"""What every call of a process shares (:class:`media.call.Call` runs one)."""

from __future__ import annotations

from dataclasses import dataclass, field

from media.agent_pool import AgentPool
from media.bridge_transfer import TransferDesk
from media.config import MediaConfig
from media.hooks import CallHooks
from media.metrics import MediaMetrics
from media.registry import CallRegistry


@dataclass(frozen=True, slots=True)
class CallEnv:
    """What every call shares: configuration, the control plane's hooks, metrics, registry,
    the transfer desk (the SIP trunk transfers to numbers go out through), and the agents calls
    go to (serve's supervised ones; by default the configuration's, unsupervised)."""

    config: MediaConfig
    hooks: CallHooks
    metrics: MediaMetrics
    registry: CallRegistry
    transfers: TransferDesk = field(default_factory=TransferDesk)
    agent_pool: AgentPool | None = None

    def __post_init__(self) -> None:
        if self.agent_pool is None:
            object.__setattr__(self, "agent_pool", AgentPool(self.config.agent_urls))

    @property
    def agents(self) -> AgentPool:
        assert self.agent_pool is not None  # (set by __post_init__)
        return self.agent_pool
