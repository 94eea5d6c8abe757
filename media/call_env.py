"""What every call of a process shares (:class:`media.call.Call` runs one)."""

from __future__ import annotations

from dataclasses import dataclass, field

from media.bridge_transfer import TransferDesk
from media.config import MediaConfig
from media.hooks import CallHooks
from media.metrics import MediaMetrics
from media.registry import CallRegistry


@dataclass(frozen=True, slots=True)
class CallEnv:
    """What every call shares: configuration, the control plane's hooks, metrics, registry,
    and the transfer desk (the SIP trunk transfers to numbers go out through)."""

    config: MediaConfig
    hooks: CallHooks
    metrics: MediaMetrics
    registry: CallRegistry
    transfers: TransferDesk = field(default_factory=TransferDesk)
