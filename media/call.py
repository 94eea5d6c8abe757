"""One call: a leg, the agent link, and the audio between them, in one Trio nursery.

Four tasks share the nursery: the leg reader (caller audio -> 16 kHz -> a bounded uplink queue),
the uplink sender (queue -> agent link), the link reader (agent frames: audio -> leg rate ->
playout buffer; interruption -> flush; tools, marks, transcripts, hangup) and the pacer (playout
buffer -> leg, one 20 ms frame per slot of the Trio clock). The first task to end the call records
why and cancels the nursery; cleanup then tells both sides, bounded in time, and reports once.
A failure in this call cancels this call only.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import trio

from media.agent_client import AgentClient, AgentLinkError
from media.audio import FRAME_MS, LINK_RATE_HZ
from media.config import MediaConfig
from media.dtmf_tones import dtmf_pcm16
from media.hooks import (
    AgentAssignment,
    CallHooks,
    CallInfo,
    CallRejected,
    HangupCause,
    LegCannotDo,
)
from media.leg import Leg, LegAudio, LegDtmf, LegError, LegHangup, LegMarkPlayed
from media.metrics import MediaMetrics
from media.pacing import PacingGrid
from media.playout import PlayoutBuffer
from media.registry import CallRegistry
from media.resample import StreamResampler
from proto import messages as m

log = logging.getLogger(__name__)

FRAME_S = FRAME_MS / 1000
PACER_SLEW_S = 0.001  # how far one frame may pull the pacing grid earlier (gaps stay >= 19 ms)
# How far behind its slot a frame may be and still catch up (the frames behind it go out in the
# same burst); further behind, the grid restarts. 100 ms: five frames, within what a phone's or
# Asterisk's jitter buffer absorbs.
PACER_CATCHUP_S = 0.1
TOOL_TIMEOUT_S = 10.0
CLEANUP_TIMEOUT_S = 2.0
PING_EVERY_S = 10.0  # agent link keep-alive; two pings unanswered (no bytes at all) end the call


@dataclass(frozen=True, slots=True)
class CallEnv:
    """What every call shares: configuration, the control plane's hooks, metrics, registry."""

    config: MediaConfig
    hooks: CallHooks
    metrics: MediaMetrics
    registry: CallRegistry


@dataclass(slots=True)
class CallStats:
    frames_in: int = 0
    frames_out: int = 0
    uplink_dropped_ms: float = 0.0
    max_lateness_s: float = 0.0


class Call:
    """Implements :class:`media.hooks.CallHandle` for the control plane."""

    def __init__(self, leg: Leg, info: CallInfo, env: CallEnv) -> None:
        self._leg = leg
        self.info = info
        self._env = env
        self._cfg = env.config
        self.stats = CallStats()
        self._nursery: trio.Nursery | None = None
        self._link: AgentClient | None = None
        self._cause: HangupCause | None = None
        self._reason = ""
        self._end_after_playout: str | None = None
        # Caller audio the leg reader could not write to the link at once; None asks the sender
        # to finish a write the kernel took only part of.
        self._uplink_send, self._uplink_recv = trio.open_memory_channel[bytes | None](
            max(2, self._cfg.uplink_queue_ms // FRAME_MS)
        )
        self._uplink_queued = 0  # items handed to the uplink sender and not yet written
        self._up = StreamResampler(leg.rate_hz, LINK_RATE_HZ)
        self._down = StreamResampler(LINK_RATE_HZ, leg.rate_hz)
        self._playout = PlayoutBuffer(leg.rate_hz, self._cfg.playout_max_ms)
        self._audio_ready = trio.lowlevel.ParkingLot()
        self._leg_label = leg.kind

    # ---- CallHandle -----------------------------------------------------------------------

    @property
    def call_id(self) -> str:
        return self.info.call_id

    @property
    def leg(self) -> str:
        return self._leg.kind

    def hangup(self, reason: str = "api") -> None:
        self._end("api", reason)

    def hangup_after_playout(self, reason: str) -> None:
        self._end_after_playout = reason
        self._audio_ready.unpark_all()

    def say(self, text: str) -> None:
        self._spawn(self._send_link, m.Text(text))

    def send_dtmf(self, digits: str) -> None:
        self._spawn(self._send_dtmf, digits)

    def transfer(self, target: str) -> None:
        transfer = getattr(self._leg, "transfer", None)
        if transfer is None:
            raise LegCannotDo(f"a {self._leg.kind} leg cannot transfer; use the PBX (ARI redirect)")
        self._spawn(transfer, target)

    # ---- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the call to its end. Never raises for the call's own failures."""
        env = self._env
        try:
            assignment = await env.hooks.call_created(self.info)
        except CallRejected as exc:
            log.info("call rejected", extra={"call_id": self.call_id, "reason": str(exc)})
            env.metrics.call_ends.labels(self.leg, "rejected", "rejected").inc()
            await self._leg.hangup(str(exc))
            return
        env.registry.add(self)
        env.metrics.calls_total.labels(self.leg).inc()
        env.metrics.calls_active.labels(self.leg).inc()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if not await self._open_link(assignment):
                    return
                nursery.start_soon(self._leg_reader)
                nursery.start_soon(self._uplink_sender)
                nursery.start_soon(self._link_reader)
                nursery.start_soon(self._pacer)
                nursery.start_soon(self._link_keepalive)
                await env.hooks.call_answered(self)
        except Exception as exc:  # a bug in this call must not reach the server's nursery
            log.exception("call failed", extra={"call_id": self.call_id})
            self._record_end("error", f"internal: {type(exc).__name__}")
        finally:
            await self._cleanup()

    async def _open_link(self, assignment: AgentAssignment) -> bool:
        try:
            self._link = await AgentClient.connect(
                self._cfg.agent_url, self._cfg.agent_connect_timeout_s
            )
            start = m.CallStart(
                call_id=self.call_id,
                agent_id=assignment.agent_id,
                agent_config=assignment.config,
                sample_rate_hz=LINK_RATE_HZ,
                leg=self.leg,
                caller=self.info.caller,
                callee=self.info.callee,
                customer_id=assignment.customer_id,
            )
            with trio.fail_after(self._cfg.agent_connect_timeout_s):
                await self._link.send(start)
        except (AgentLinkError, trio.TooSlowError) as exc:
            reason = getattr(exc, "reason", "connect_timeout")
            self._env.metrics.link_errors.labels(reason).inc()
            self._end("error", f"agent unavailable: {reason}")
            return False
        return True

    def _record_end(self, cause: HangupCause, reason: str) -> None:
        if self._cause is None:
            self._cause, self._reason = cause, reason

    def _end(self, cause: HangupCause, reason: str) -> None:
        self._record_end(cause, reason)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _spawn(self, fn: Any, *args: Any) -> None:
        if self._nursery is None or self._cause is not None:
            raise LegCannotDo("the call is not in progress")
        self._nursery.start_soon(fn, *args)

    async def _cleanup(self) -> None:
        cause, reason = self._cause or "shutdown", self._reason or "server shutting down"
        env = self._env
        with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT_S):
            if self._link is not None:
                if cause != "agent":
                    await self._try_send_link(m.Hangup(reason=reason))
                await self._link.aclose(1000, reason)
            await self._leg.hangup(reason)
        env.registry.remove(self.call_id)
        env.metrics.calls_active.labels(self.leg).dec()
        env.metrics.call_ends.labels(self.leg, cause, reason.split(":")[0][:40]).inc()
        log.info(
            "call ended",
            extra={"call_id": self.call_id, "cause": cause, "reason": reason, **asdict(self.stats)},
        )
        with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT_S):
            await env.hooks.call_hungup(self.call_id, cause, reason)

    # ---- caller -> agent ------------------------------------------------------------------

    async def _leg_reader(self) -> None:
        metrics = self._env.metrics
        frames_in = metrics.frames_in.labels(self.leg)
        while True:
            try:
                event = await self._leg.receive()
            except LegError as exc:
                metrics.leg_errors.labels(self.leg, exc.reason).inc()
                cause: HangupCause = "caller" if exc.reason == "closed" else "error"
                log.info("leg ended", extra={"call_id": self.call_id, "reason": str(exc)})
                self._end(cause, f"leg {exc.reason}")
                return
            if isinstance(event, LegAudio):
                frames_in.inc()
                self.stats.frames_in += 1
                self._to_uplink(event.pcm16)
            elif isinstance(event, LegDtmf):
                await self._send_link(m.Dtmf(event.digit, event.duration_ms))
            elif isinstance(event, LegMarkPlayed):
                await self._send_link(m.Mark(event.name))
            elif isinstance(event, LegHangup):
                self._end("caller", event.reason)
                return

    def _to_uplink(self, pcm16: bytes) -> None:
        if self._up.in_rate_hz != self._leg.rate_hz:  # the leg learnt its real rate
            self._retune(self._leg.rate_hz)
        pcm16_link = self._up.process(pcm16)
        # The usual case: nothing queued ahead and the kernel takes the frame at once, so it is
        # written from this task (no hand-off to the sender task, no lock, no deadline scope).
        if self._uplink_queued == 0 and self._link is not None:
            try:
                if self._link.send_nowait(m.Audio(pcm16_link, LINK_RATE_HZ)):
                    if self._link.has_unsent:
                        self._queue_uplink(None)
                    return
            except AgentLinkError:
                pass  # the sender's send meets the same error and ends the call its usual way
        if not self._queue_uplink(pcm16_link):
            # The agent link is not keeping up: drop this frame, count it, keep the call alive.
            dropped_ms = len(pcm16) / 2 * 1000 / self._leg.rate_hz
            self.stats.uplink_dropped_ms += dropped_ms
            self._env.metrics.drops.labels("uplink").inc(dropped_ms)

    def _queue_uplink(self, item: bytes | None) -> bool:
        """Hand ``item`` to the uplink sender; False when its queue is full. (A full queue
        needs no flush request: the sender's next write takes the leftover first.)"""
        try:
            self._uplink_send.send_nowait(item)
        except trio.WouldBlock:
            return False
        self._uplink_queued += 1
        return True

    def _retune(self, rate_hz: int) -> None:
        self._up = StreamResampler(rate_hz, LINK_RATE_HZ)
        self._down = StreamResampler(LINK_RATE_HZ, rate_hz)
        self._playout = PlayoutBuffer(rate_hz, self._cfg.playout_max_ms)

    async def _uplink_sender(self) -> None:
        async for pcm16 in self._uplink_recv:
            if pcm16 is None:
                await self._flush_link()
            else:
                await self._send_link(m.Audio(pcm16, LINK_RATE_HZ))
            self._uplink_queued -= 1

    async def _flush_link(self) -> None:
        assert self._link is not None
        try:
            with trio.fail_after(self._cfg.leg_send_timeout_s):
                await self._link.flush()
        except (AgentLinkError, trio.TooSlowError) as exc:
            self._env.metrics.link_errors.labels(getattr(exc, "reason", "send_timeout")).inc()
            if self._end_after_playout is None:
                self._end("error", "agent link lost")  # a frame cut short: the link is unusable

    async def _send_link(self, frame: m.LinkFrame) -> None:
        if await self._try_send_link(frame) or self._end_after_playout is not None:
            return  # (after a goodbye, the agent may leave)
        if self._link is not None and self._link.closed_by_agent:
            return  # the link reader ends the call once it has read the agent's last frames
        self._end("error", "agent link lost")

    async def _try_send_link(self, frame: m.LinkFrame) -> bool:
        if self._link is None:
            return False
        try:
            with trio.fail_after(self._cfg.leg_send_timeout_s):
                await self._link.send(frame)
        except (AgentLinkError, trio.TooSlowError) as exc:
            self._env.metrics.link_errors.labels(getattr(exc, "reason", "send_timeout")).inc()
            return False
        return True

    async def _link_keepalive(self) -> None:
        """A silent agent is normal (the caller is talking); a dead one answers no pings."""
        assert self._link is not None
        while self._end_after_playout is None:
            await trio.sleep(PING_EVERY_S)
            if trio.current_time() - self._link.last_receive_time > 2 * PING_EVERY_S:
                self._env.metrics.link_errors.labels("unresponsive").inc()
                self._end("error", "agent link unresponsive")
                return
            try:
                await self._link.ping()
            except AgentLinkError:
                self._end("error", "agent link lost")
                return

    # ---- agent -> caller ------------------------------------------------------------------

    async def _link_reader(self) -> None:
        assert self._link is not None
        while True:
            try:
                frame = await self._link.recv()
            except AgentLinkError as exc:
                if self._end_after_playout is not None:
                    return  # the agent said goodbye and left; the pacer finishes the call
                self._env.metrics.link_errors.labels(exc.reason).inc()
                self._end("error", f"agent link {exc.reason}")
                return
            await self._on_agent_frame(frame)

    async def _on_agent_frame(self, frame: m.LinkFrame) -> None:
        if isinstance(frame, m.Audio):
            self._on_agent_audio(frame)
        elif isinstance(frame, m.Interruption):
            await self._barge_in()
        elif isinstance(frame, m.Mark):
            self._playout.add_mark(frame.name)
        elif isinstance(frame, m.Hangup):
            self.hangup_after_playout(frame.reason or "agent hung up")
        elif isinstance(frame, m.FunctionCall):
            assert self._nursery is not None
            self._nursery.start_soon(self._run_tool, frame)
        elif isinstance(frame, m.Dtmf):
            await self._send_dtmf(frame.digit)
        elif isinstance(frame, m.Transcript):
            await self._env.hooks.transcript(self.call_id, frame.role, frame.text, frame.final)
        elif isinstance(frame, m.Transcription):  # a stock pipecat bot's view of the caller
            await self._env.hooks.transcript(self.call_id, "caller", frame.text, True)
        elif isinstance(frame, m.Error):
            log.warning(
                "agent error",
                extra={"call_id": self.call_id, "code": frame.code, "detail": frame.message},
            )
            if frame.fatal:
                self._end("error", f"agent error: {frame.code}")

    def _on_agent_audio(self, frame: m.Audio) -> None:
        if self._end_after_playout is not None:
            return  # the agent already said goodbye
        if frame.sample_rate_hz != self._down.in_rate_hz:
            self._down = StreamResampler(frame.sample_rate_hz, self._leg.rate_hz)
        self._queue_playout(self._down.process(frame.pcm16))

    def _queue_playout(self, pcm16: bytes) -> None:
        dropped_ms = self._playout.push(pcm16)
        if dropped_ms:
            self._env.metrics.drops.labels("playout").inc(dropped_ms)
        self._audio_ready.unpark_all()

    async def _barge_in(self) -> None:
        dropped_ms, marks = self._playout.flush()
        self._down.reset()
        self._env.metrics.flushes.inc()
        log.debug("barge-in", extra={"call_id": self.call_id, "dropped_ms": dropped_ms})
        await self._leg.clear()
        for name in marks:  # cleared marks are reported as played, as Twilio does
            await self._send_link(m.Mark(name))

    async def _send_dtmf(self, digits: str) -> None:
        try:
            await self._leg.send_dtmf(digits)
        except LegCannotDo:
            self._queue_playout(dtmf_pcm16(digits, self._leg.rate_hz))

    async def _run_tool(self, call: m.FunctionCall) -> None:
        try:
            with trio.fail_after(TOOL_TIMEOUT_S):
                outcome = await self._env.hooks.execute_tool(self, call.name, call.arguments)
            result, is_error = outcome.result, outcome.is_error
        except trio.TooSlowError:
            result, is_error = {"error": f"tool {call.name} timed out"}, True
        except LegCannotDo as exc:
            result, is_error = {"error": str(exc)}, True
        except Exception as exc:  # a broken tool gives the LLM an error, never a dead call
            log.exception("tool failed", extra={"call_id": self.call_id, "tool": call.name})
            result, is_error = {"error": f"tool {call.name} failed: {type(exc).__name__}"}, True
        await self._send_link(m.FunctionCallResult(call.tool_call_id, call.name, result, is_error))

    # ---- pacing ---------------------------------------------------------------------------

    async def _pacer(self) -> None:
        """Send one frame per 20 ms slot of a :class:`media.pacing.PacingGrid`: frames whose
        slot passed during a short delay catch up at once, a stream that stopped restarts the
        grid, a live stream that runs early pulls it earlier (the rules are in that module)."""
        grid = PacingGrid(FRAME_S, PACER_CATCHUP_S, PACER_SLEW_S)
        held_tail = False
        ran_dry = False
        frames_out = self._env.metrics.frames_out.labels(self.leg)
        lateness = self._env.metrics.lateness
        while True:
            if not len(self._playout):
                if self._end_after_playout is not None:
                    self._end("agent", self._end_after_playout)
                    return
                await self._audio_ready.park()
                ran_dry = True
                continue
            now = trio.current_time()
            due = grid.slot(now, ran_dry)
            if not self._leg.self_paced and now < due:
                # (A slot already past needs no sleep: Trio wakes a sleeper by cancelling it,
                # the costliest wake-up it has. Sends the kernel takes at once do not
                # checkpoint, so a catch-up burst runs at most PACER_CATCHUP_S / FRAME_S + 1
                # frames before this sleep, the loop's checkpoint, comes round again.)
                await trio.sleep_until(due)
            ran_dry = False
            frame = self._playout.pop_frame(pad=held_tail or self._end_after_playout is not None)
            if frame is None:  # a short tail: give the agent one slot to complete it
                held_tail = True
                grid.advance()
                continue
            held_tail = False
            late_s = trio.current_time() - due
            lateness.observe(late_s)
            self.stats.max_lateness_s = max(self.stats.max_lateness_s, late_s)
            await self._send_leg(frame)
            frames_out.inc()
            self.stats.frames_out += 1
            for name in self._playout.passed_marks():
                await self._leg.send_mark(name)
                await self._send_link(m.Mark(name))
            grid.advance()

    async def _send_leg(self, frame: bytes) -> None:
        try:
            await self._leg.send_audio(frame)
        except LegError as exc:
            self._env.metrics.leg_errors.labels(self.leg, exc.reason).inc()
            self._end("caller" if exc.reason == "closed" else "error", f"leg {exc.reason}")
            await trio.sleep_forever()  # cancelled by _end


def new_call_id() -> str:
    return str(uuid.uuid4())
