"""Everything the control plane's handlers need, built once and passed down (no globals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from control.call_commands import CallCommands
from control.conferences import Conferences
from control.config import ControlConfig
from control.db import Database
from control.events import EventBus
from control.redis_link import RedisLink
from control.schemas import BUILTIN_TOOL_NAMES
from control.store import Store
from media.registry import CallRegistry

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ControlMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.http_latency = Histogram(
            "callbridge_http_request_seconds",
            "Control plane HTTP latency",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.tool_latency = Histogram(
            "callbridge_tool_seconds",
            "Agent tool execution latency",
            ["tool"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.event_drops = Counter(
            "callbridge_event_drops", "Events dropped at a full subscriber queue", registry=registry
        )
        self.command_drops = Counter(
            "callbridge_call_command_drops",
            "Call commands from other nodes dropped at a full inbox (their requester answered 503)",
            registry=registry,
        )
        self.tool_errors = Counter(
            "callbridge_tool_errors",
            "Agent tool calls answered with an error (built-in tool name, or custom)",
            ["tool"],
            registry=registry,
        )
        # set to the dispatcher's queue length where it is built (control/plane.py)
        self.webhook_backlog = Gauge(
            "callbridge_webhook_backlog",
            "Webhook deliveries waiting: queued, in flight or waiting for a retry",
            registry=registry,
        )
        self.summary_drops = Counter(
            "callbridge_summary_drops",
            "Ended calls left without a summary: the summary queue was full (control/summaries.py)",
            registry=registry,
        )
        self.webhook_drops = Counter(
            "callbridge_webhook_drops",
            "Webhook deliveries dropped at a full queue",
            registry=registry,
        )

    def observe_event(self, event: dict[str, Any]) -> None:
        """The event bus's observer: tool errors, named as ``callbridge_tool_seconds`` names
        them (a customer's own tool names would make one series per name)."""
        if event["type"] == "tool_called" and event["data"].get("is_error"):
            name = event["data"].get("name", "")
            self.tool_errors.labels(name if name in BUILTIN_TOOL_NAMES else "custom").inc()


@dataclass(frozen=True, slots=True)
class Services:
    cfg: ControlConfig
    db: Database
    store: Store
    bus: EventBus
    calls: CallRegistry
    metrics: ControlMetrics
    commands: CallCommands  # call actions reach the call's holder (control/call_commands.py)
    redis: RedisLink | None = None
    conferences: Conferences | None = None  # conference bridges (control/conferences.py)

    @property
    def http_latency(self) -> Histogram:
        return self.metrics.http_latency
