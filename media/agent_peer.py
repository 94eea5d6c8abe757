"""The agent link as a call's peer (:class:`media.peer.AudioPeer`).

Three tasks in a nursery of its own, inside the call's: the uplink sender (caller audio the leg
reader could not write at once), the link reader (agent frames: audio -> the call's playout;
interruption -> flush; tools, marks, transcripts, hangup) and the keep-alive. Its own nursery lets
the call close the link (a blind transfer) without ending itself; a link failure while the link
is the call's agent ends the call. Parked (the call is in a bridge and kept its agent for later),
the link stays up, hears nothing, and its audio is dropped; its tool calls and hangup still act.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from media.agent_client import AgentClient, AgentLinkError
from media.agent_mux import MuxLink, connect_link
from media.audio import LINK_RATE_HZ
from media.config import MediaConfig
from media.hooks import AgentAssignment, CallInfo, HangupCause
from media.leg import LegDtmf, LegMarkPlayed
from media.leg_side import CallStats
from media.metrics import MediaMetrics
from media.peer import Downlink, PeerEvent, PeerKind
from proto import messages as m
from proto.messages import JsonObject

log = logging.getLogger(__name__)

PING_EVERY_S = 10.0  # agent link keep-alive; two pings unanswered (no bytes at all) end the call


class AgentOwner(Protocol):
    """What the agent link needs from its call."""

    @property
    def call_id(self) -> str: ...

    @property
    def ending(self) -> bool:
        """The agent said goodbye: the call ends once its last audio has played."""

    def end(self, cause: HangupCause, reason: str) -> None: ...

    def hangup_after_playout(self, reason: str) -> None: ...

    def start_tool(self, call: m.FunctionCall) -> None: ...

    async def agent_dtmf(self, digits: str) -> None: ...

    async def agent_transcript(self, role: str, text: str, final: bool) -> None: ...


class AgentPeer:
    kind: PeerKind = "agent"

    def __init__(
        self,
        link: AgentClient | MuxLink,
        owner: AgentOwner,
        downlink: Downlink,
        cfg: MediaConfig,
        metrics: MediaMetrics,
        stats: CallStats,
    ) -> None:
        self.link = link
        self.parked = False
        self.closed = False  # closed by the call on purpose: its errors end nothing
        self._owner = owner
        self._downlink = downlink
        self._cfg = cfg
        self._metrics = metrics
        self._stats = stats
        self._scope = trio.CancelScope()
        # Caller audio the leg reader could not write to the link at once; None asks the sender
        # to finish a write the kernel took only part of.
        self._uplink_send, self._uplink_recv = trio.open_memory_channel[bytes | None](
            max(2, cfg.uplink_queue_ms // 20)
        )
        self._uplink_queued = 0  # items handed to the uplink sender and not yet written
        self._turn_from: float | None = None  # the caller's last final transcript, Trio time
        if isinstance(link, MuxLink):  # speech from the shared reader, without a hand-off
            link.audio_sink = self._on_audio

    @classmethod
    async def open(
        cls,
        assignment: AgentAssignment,
        info: CallInfo,
        leg_kind: str,
        cfg: MediaConfig,
        url: str,
    ) -> AgentClient | MuxLink:
        """Connect to the agent at ``url`` (:mod:`media.agent_pool` chose it) and send the call's
        start; raises :class:`AgentLinkError` or TooSlowError."""
        link = await connect_link(url, cfg)
        start = m.CallStart(
            call_id=info.call_id,
            agent_id=assignment.agent_id,
            agent_config=_with_call_variables(assignment.config, info),
            sample_rate_hz=LINK_RATE_HZ,
            leg=leg_kind,
            caller=info.caller,
            callee=info.callee,
            customer_id=assignment.customer_id,
        )
        try:
            with trio.fail_after(cfg.agent_connect_timeout_s):
                await link.send(start)
        except BaseException:
            await link.aclose(1011, "start failed")
            raise
        return link

    def route_audio(self, downlink: Downlink) -> None:
        """Where the agent's speech goes from now on: the caller's playout, or a bridge."""
        self._downlink = downlink

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._uplink_sender)
                nursery.start_soon(self._link_reader)
                nursery.start_soon(self._keepalive)
                task_status.started()

    async def close(self, reason: str) -> None:
        """Say goodbye to the agent and drop the link; the call goes on without it."""
        self.closed = True  # no more caller audio; its errors from here on end nothing
        with trio.CancelScope(shield=True), trio.move_on_after(2.0):
            # (The goodbye waits its turn behind a write in flight: cancelling the tasks first
            # could cut a frame in half and the agent would never read the goodbye.)
            await self.try_send(m.Hangup(reason=reason))
            await self.link.aclose(1000, reason)
        self._scope.cancel()

    # ---- caller -> agent ------------------------------------------------------------------

    def uplink(self, pcm16: bytes) -> None:
        if self.parked or self.closed:
            return
        # The usual case: nothing queued ahead and the kernel takes the frame at once, so it is
        # written from the leg reader's task (no hand-off, no lock, no deadline scope).
        if self._uplink_queued == 0:
            try:
                if self.link.send_nowait(m.Audio(pcm16, LINK_RATE_HZ)):
                    if self.link.has_unsent:
                        self._queue_uplink(None)
                    return
            except AgentLinkError:
                pass  # the sender's send meets the same error and ends the call its usual way
        if not self._queue_uplink(pcm16):
            # The agent link is not keeping up: drop this frame, count it, keep the call alive.
            dropped_ms = len(pcm16) / 2 * 1000 / LINK_RATE_HZ
            self._stats.uplink_dropped_ms += dropped_ms
            self._metrics.drops.labels("uplink").inc(dropped_ms)

    def _queue_uplink(self, item: bytes | None) -> bool:
        """Hand ``item`` to the uplink sender; False when its queue is full. (A full queue
        needs no flush request: the sender's next write takes the leftover first.)"""
        try:
            self._uplink_send.send_nowait(item)
        except trio.WouldBlock:
            return False
        self._uplink_queued += 1
        return True

    async def leg_event(self, event: PeerEvent) -> None:
        if isinstance(event, LegDtmf):
            if not self.parked:
                await self.send(m.Dtmf(event.digit, event.duration_ms))
        elif isinstance(event, LegMarkPlayed):
            await self.send(m.Mark(event.name))

    async def _uplink_sender(self) -> None:
        async for pcm16 in self._uplink_recv:
            if pcm16 is None:
                await self._flush_link()
            elif not self.closed:  # (queued before the goodbye: it would follow the Hangup)
                await self.send(m.Audio(pcm16, LINK_RATE_HZ))
            self._uplink_queued -= 1

    async def _flush_link(self) -> None:
        try:
            with trio.fail_after(self._cfg.leg_send_timeout_s):
                await self.link.flush()
        except (AgentLinkError, trio.TooSlowError) as exc:
            self._metrics.link_errors.labels(getattr(exc, "reason", "send_timeout")).inc()
            if not self._owner.ending:
                self._lost("agent link lost")  # a frame cut short: the link is unusable

    async def send(self, frame: m.LinkFrame) -> None:
        if await self.try_send(frame) or self._owner.ending:
            return  # (after a goodbye, the agent may leave)
        if self.link.closed_by_agent:
            return  # the link reader ends the call once it has read the agent's last frames
        self._lost("agent link lost")

    async def try_send(self, frame: m.LinkFrame) -> bool:
        try:
            with trio.fail_after(self._cfg.leg_send_timeout_s):
                await self.link.send(frame)
        except (AgentLinkError, trio.TooSlowError) as exc:
            self._metrics.link_errors.labels(getattr(exc, "reason", "send_timeout")).inc()
            return False
        return True

    def _lost(self, reason: str) -> None:
        if not self.closed:
            self._owner.end("error", reason)

    async def _keepalive(self) -> None:
        """A silent agent is normal (the caller is talking); a dead one answers no pings."""
        while not self._owner.ending:
            await trio.sleep(PING_EVERY_S)
            if trio.current_time() - self.link.last_receive_time > 2 * PING_EVERY_S:
                self._metrics.link_errors.labels("unresponsive").inc()
                self._lost("agent link unresponsive")
                return
            try:
                await self.link.ping()
            except AgentLinkError:
                self._lost("agent link lost")
                return

    # ---- agent -> caller ------------------------------------------------------------------

    async def _link_reader(self) -> None:
        while True:
            try:
                frame = await self.link.recv()
            except AgentLinkError as exc:
                if self._owner.ending:
                    return  # the agent said goodbye and left; the pacer finishes the call
                self._metrics.link_errors.labels(exc.reason).inc()
                self._lost(f"agent link {exc.reason}")
                return
            await self._on_agent_frame(frame)

    async def _on_agent_frame(self, frame: m.LinkFrame) -> None:
        if isinstance(frame, m.Audio):
            self._on_audio(frame)
        elif isinstance(frame, m.Interruption):
            if not self.parked:
                await self._barge_in()
        elif isinstance(frame, m.Mark):
            if self.parked:  # nothing of its audio plays: report it as played at once
                await self.send(m.Mark(frame.name))
            else:
                self._downlink.add_mark(frame.name)
        elif isinstance(frame, m.Hangup):
            self._owner.hangup_after_playout(frame.reason or "agent hung up")
        elif isinstance(frame, m.FunctionCall):
            self._owner.start_tool(frame)
        elif isinstance(frame, m.Dtmf):
            await self._owner.agent_dtmf(frame.digit)
        elif isinstance(frame, m.Transcript):
            if frame.role == "caller" and frame.final:
                self._turn_from = trio.current_time()
            await self._owner.agent_transcript(frame.role, frame.text, frame.final)
        elif isinstance(frame, m.Transcription):  # a stock pipecat bot's view of the caller
            self._turn_from = trio.current_time()
            await self._owner.agent_transcript("caller", frame.text, True)
        elif isinstance(frame, m.Error):
            log.warning(
                "agent error",
                extra={"call_id": self._owner.call_id, "code": frame.code, "detail": frame.message},
            )
            if frame.fatal:
                self._owner.end("error", f"agent error: {frame.code}")

    def _on_audio(self, frame: m.Audio) -> None:
        if self._turn_from is not None:  # the first audio of the agent's answer
            took_s = trio.current_time() - self._turn_from
            self._metrics.agent_turn.observe(took_s)
            self._stats.add_turn(took_s)  # the call's own figures, for its summary
            self._turn_from = None
        if not self.parked:
            self._downlink.play(frame.pcm16, frame.sample_rate_hz)

    async def _barge_in(self) -> None:
        for name in await self._downlink.interrupt():  # cleared marks count as played (Twilio)
            await self.send(m.Mark(name))


def _with_call_variables(config: JsonObject, info: CallInfo) -> JsonObject:
    """The PBX's variables for this call (Asterisk channel variables, from ARI) ride in the
    agent's config as ``channel_vars``, since the call start has no field of its own for them."""
    variables = info.params.get("channel_vars")
    return {**config, "channel_vars": variables} if isinstance(variables, dict) else config
