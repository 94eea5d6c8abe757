"""An agent link closed by the call (a switch to another agent, a transfer): its goodbye is the
last frame it gets, even with caller audio still queued for it behind a slow write."""

from __future__ import annotations

from typing import cast

import trio

from media.agent_client import AgentClient
from media.agent_peer import AgentOwner, AgentPeer
from media.config import MediaConfig
from media.hooks import HangupCause
from media.leg_side import CallStats
from media.metrics import MediaMetrics
from media.peer import Downlink, NoPeer
from proto import messages as m


class SlowLink:
    """The agent link's writing side, one frame at a time in order (as its lock), each write
    waiting until ``writable`` is set (the agent not reading yet)."""

    def __init__(self) -> None:
        self.written: list[m.LinkFrame] = []
        self.writable = trio.Event()
        self.has_unsent = False
        self.closed_by_agent = False
        self.last_receive_time = trio.current_time()
        self._lock = trio.Lock()

    def send_nowait(self, frame: m.LinkFrame) -> bool:
        return False  # a write is in flight: everything goes through the uplink sender

    async def send(self, frame: m.LinkFrame) -> None:
        async with self._lock:
            await self.writable.wait()
            self.written.append(frame)

    async def recv(self) -> m.LinkFrame:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        await trio.sleep(0.05)  # the close handshake: the link's other tasks run meanwhile


class Owner:
    ending = False

    def end(self, cause: HangupCause, reason: str) -> None:
        raise AssertionError(f"the call ended: {cause} {reason}")

    def hangup_after_playout(self, reason: str) -> None: ...

    def start_tool(self, call: m.FunctionCall) -> None: ...

    async def agent_dtmf(self, digits: str) -> None: ...

    async def agent_transcript(self, role: str, text: str, final: bool) -> None: ...


async def test_the_goodbye_is_the_last_frame_even_with_caller_audio_queued() -> None:
    link = SlowLink()
    peer = AgentPeer(
        cast(AgentClient, link),
        cast(AgentOwner, Owner()),
        cast(Downlink, NoPeer()),
        MediaConfig(),
        MediaMetrics(),
        CallStats(),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.run)
        for _ in range(5):
            peer.uplink(bytes(640))  # queued: the first frame's write is stuck
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(peer.close, "handed over to another agent")
        await trio.testing.wait_all_tasks_blocked()
        link.writable.set()
    last = link.written[-1]
    assert isinstance(last, m.Hangup) and last.reason == "handed over to another agent"
    assert isinstance(link.written[0], m.Audio)  # (the write in flight finished first)
