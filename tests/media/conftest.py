"""Fixtures for media-core tests: an agent server on its own asyncio thread, the media core in
the test's Trio nursery, and hooks that record what a control plane would be told."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pytest
import trio

from ai_pipeline.echo import echo_call
from ai_pipeline.link import CallHandler
from ai_pipeline.server import AgentServer
from media.audiosocket_server import serve_audiosocket
from media.call import CallEnv
from media.config import HostPort, MediaConfig
from media.hooks import AgentAssignment, CallHandle, CallInfo, ToolOutcome
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from proto.mux import MUX_PATH


@contextmanager
def agent_in_thread(handler: CallHandler) -> Iterator[str]:
    """Serve the agent link with ``handler`` on an asyncio loop in a thread; yields its URL."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(AgentServer(handler).start("127.0.0.1", 0))
        state["server"] = server
        state["port"] = server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()
        for conn in server.connections:  # a multiplexed link outlives its calls; the media
            if conn.request is not None and conn.request.path == MUX_PATH:  # core's Trio run,
                conn.transport.abort()  # blocked in this join, could not answer a close
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()

    thread = threading.Thread(target=run, name="agent", daemon=True)
    thread.start()
    assert ready.wait(10), "agent server did not start"
    try:
        yield f"ws://127.0.0.1:{state['port']}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@dataclass
class RecordingHooks:
    created: list[CallInfo] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    hungup: list[tuple[str, str, str]] = field(default_factory=list)
    transcripts: list[tuple[str, str, str]] = field(default_factory=list)
    digits: list[tuple[str, str]] = field(default_factory=list)
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    ended: trio.Event = field(default_factory=trio.Event)

    async def call_created(self, info: CallInfo) -> AgentAssignment:
        self.created.append(info)
        return AgentAssignment(agent_id="test-agent", customer_id="c1", config={"k": "v"})

    async def call_answered(self, call: CallHandle) -> None:
        self.answered.append(call.call_id)

    async def call_hungup(self, call_id: str, cause: str, reason: str) -> None:
        self.hungup.append((call_id, cause, reason))
        self.ended.set()

    async def transcript(self, call_id: str, role: str, text: str, final: bool) -> None:
        self.transcripts.append((call_id, role, text))

    async def dtmf_received(self, call_id: str, digit: str, duration_ms: int) -> None:
        self.digits.append((call_id, digit))

    async def execute_tool(
        self, call: CallHandle, name: str, arguments: dict[str, Any]
    ) -> ToolOutcome:
        self.tools.append((name, arguments))
        if name == "end_call":
            call.hangup_after_playout("goodbye")
        return ToolOutcome({"ok": True, "tool": name})

    async def transfer_requested(self, call: CallHandle, target: str) -> None:
        return None  # (the API's transfers: nobody to report to here)


@dataclass
class Media:
    port: int
    env: CallEnv
    hooks: RecordingHooks

    def counter(self, name: str, **labels: str) -> float:
        value = self.env.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


async def start_media(nursery: trio.Nursery, agent_url: str, **overrides: Any) -> Media:
    cfg = replace(MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=agent_url), **overrides)
    hooks = RecordingHooks()
    env = CallEnv(config=cfg, hooks=hooks, metrics=MediaMetrics(), registry=CallRegistry())
    port = await nursery.start(serve_audiosocket, env)
    return Media(port, env, hooks)


@pytest.fixture
def echo_agent() -> Iterator[str]:
    with agent_in_thread(echo_call) as url:
        yield url


@pytest.fixture
async def media_echo(nursery: trio.Nursery, echo_agent: str) -> AsyncIterator[Media]:
    yield await start_media(nursery, echo_agent)


def tone(freq_hz: float, seconds: float, rate_hz: int = 8000, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return (level * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype("<i2").tobytes()


def best_snr_db(reference: bytes, received: bytes, max_delay: int = 800) -> tuple[float, int]:
    """SNR of ``received`` against ``reference`` at the best whole-sample delay."""
    ref = np.frombuffer(reference, dtype="<i2").astype(float)
    got = np.frombuffer(received, dtype="<i2").astype(float)
    best = (-np.inf, 0)
    for delay in range(max_delay):
        n = min(len(ref), len(got) - delay)
        if n < 400:
            break
        a, b = ref[200:n], got[delay + 200 : delay + n]
        err = float(((a - b) ** 2).sum())
        snr = 10 * np.log10(float((a**2).sum()) / max(err, 1e-9))
        if snr > best[0]:
            best = (snr, delay)
    return best
