"""Prometheus metrics of the ARI application, on the registry serve passes down (``/metrics``).

What an operator needs to see an Asterisk integration go wrong: whether the events socket is up
and how often it came back, how Stasis calls fared at set-up, and ARI work that failed or was
dropped because its queue was full.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class AriMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.connected = Gauge(
            "callbridge_ari_connected", "1 while the ARI events socket is up", registry=r
        )
        self.connects = Counter(
            "callbridge_ari_connects", "ARI events socket (re)connections", registry=r
        )
        self.setups = Counter(
            "callbridge_ari_setups",
            "Stasis calls by set-up outcome (started, failed, over_capacity, adopted)",
            ["outcome"],
            registry=r,
        )
        self.job_failures = Counter(
            "callbridge_ari_job_failures",
            "ARI requests that failed (refused, unavailable, error) or were dropped (queue full)",
            ["reason"],
            registry=r,
        )

    def watch_connected(self, connected: Callable[[], bool]) -> None:
        self.connected.set_function(lambda: 1.0 if connected() else 0.0)
