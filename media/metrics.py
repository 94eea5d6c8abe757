"""Prometheus metrics of the media core, on a registry passed down explicitly (no globals).

Per-frame counters are bound to their labels once per call, so the hot path is one ``inc()``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class MediaMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.calls_total = Counter("callbridge_calls", "Calls started", ["leg"], registry=r)
        self.calls_active = Gauge(
            "callbridge_calls_active", "Calls in progress", ["leg"], registry=r
        )
        self.call_ends = Counter(
            "callbridge_call_ends",
            "Calls ended, by cause and reason",
            ["leg", "cause", "reason"],
            registry=r,
        )
        self.leg_errors = Counter(
            "callbridge_leg_errors",
            "Leg protocol/transport failures",
            ["leg", "reason"],
            registry=r,
        )
        self.link_errors = Counter(
            "callbridge_link_errors", "Agent link failures", ["reason"], registry=r
        )
        self.frames_in = Counter(
            "callbridge_leg_frames_in", "Audio frames from callers", ["leg"], registry=r
        )
        self.frames_out = Counter(
            "callbridge_leg_frames_out", "Audio frames to callers", ["leg"], registry=r
        )
        self.drops = Counter(
            "callbridge_audio_dropped_ms",
            "Audio dropped at a full bound, in milliseconds",
            ["where"],
            registry=r,
        )
        self.flushes = Counter(
            "callbridge_playout_flushes", "Barge-in flushes of playout", registry=r
        )
        self.lateness = Histogram(
            "callbridge_playout_lateness_seconds",
            "Outbound frame send time minus its slot",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05),
            registry=r,
        )
        self.sip_rejected = Counter(
            "callbridge_sip_rejected",
            "SIP datagrams dropped or requests refused, by reason",
            ["reason"],
            registry=r,
        )
        self.agent_turn = Histogram(
            "callbridge_agent_turn_seconds",
            "From the caller's final transcript to the first audio of the agent's answer"
            " (LLM and TTS as the media core sees them; the agent's VAD and STT come before)",
            buckets=(0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
            registry=r,
        )
        self.rtp_rejected = Counter(
            "callbridge_rtp_rejected",
            "RTP/RTCP datagrams rejected (malformed, spoofed, wrong payload type), by reason",
            ["reason"],
            registry=r,
        )
