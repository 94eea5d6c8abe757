"""An agent link as a bridge participant: it hears the mix of the others and everyone hears it.

The agent's speech arrives in bursts faster than real time; its port's queue holds it (bounded
like a call's playout) and the bridge's tick takes one frame every 20 ms, so the tick paces it.
The mix of the others goes to the agent as its caller audio. A barge-in empties the queue. Marks
are reported played once queued (the transcript of a bridge's agent is what it said, not what
each participant heard). A warm transfer waits for the agent's introduction to be heard
(:meth:`AgentInBridge.wait_heard`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from media.audio import FRAME_MS, LINK_RATE_HZ
from media.bridge import Bridge
from media.bridge_core import BridgePort
from media.leg import LegMarkPlayed
from media.peer import AudioPeer
from media.resample import StreamResampler

Spawn = Callable[..., object]
FRAME_S = FRAME_MS / 1000


class AgentInBridge:
    """Implements :class:`media.peer.Downlink` for the agent's own speech."""

    def __init__(
        self,
        bridge: Bridge,
        participant_id: str,
        agent: AudioPeer,
        queue_ms: int,
        spawn: Spawn,
    ) -> None:
        self.bridge = bridge
        self.participant_id = participant_id
        self._agent = agent
        self._spawn = spawn
        self._resampler: StreamResampler | None = None
        self._spoken_chunks = 0  # bursts of speech received, for wait_heard
        self._spoke = trio.Event()
        self.port: BridgePort = bridge.join(participant_id, self._hear, queue_ms, live=False)

    def _hear(self, pcm16: bytes, rate_hz: int) -> None:
        self._agent.uplink(pcm16)  # the others' mix, as the agent's caller audio

    def play(self, pcm16: bytes, rate_hz: int) -> None:
        self._spoken_chunks += 1
        self._spoke.set()
        if rate_hz != LINK_RATE_HZ:  # (a stock bot may speak at its TTS's rate)
            if self._resampler is None or self._resampler.in_rate_hz != rate_hz:
                self._resampler = StreamResampler(rate_hz, LINK_RATE_HZ)
            pcm16 = self._resampler.process(pcm16)
        self.port.uplink(pcm16)

    def add_mark(self, name: str) -> None:
        report: Callable[[LegMarkPlayed], Awaitable[None]] = self._agent.leg_event
        self._spawn(report, LegMarkPlayed(name))

    async def interrupt(self) -> list[str]:
        self.port.clear()
        return []

    async def wait_heard(self, start_s: float, quiet_s: float, max_s: float) -> None:
        """Until the agent has started talking (within ``start_s``), the bridge has taken all
        of its speech, and nothing more came for ``quiet_s``; ``max_s`` at most. The tick takes
        the frames without telling anyone, so this looks once a frame."""
        with trio.move_on_after(max_s):
            with trio.move_on_after(start_s):
                await self._spoke.wait()
            seen, quiet_since = self._spoken_chunks, trio.current_time()
            while trio.current_time() - quiet_since < quiet_s:
                await trio.sleep(FRAME_S)
                if self.port.queued_frames or self._spoken_chunks != seen:
                    seen, quiet_since = self._spoken_chunks, trio.current_time()

    def leave(self) -> None:
        self.bridge.leave(self.participant_id)
