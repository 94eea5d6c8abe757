"""One call's lifecycle: its leg side, its peer (the agent link or a bridge), in one nursery.

The leg side (:mod:`media.leg_side`) runs the leg reader and the pacer; the peer is the agent
link (:mod:`media.agent_peer`, tasks in a nursery of its own inside this one) or a bridge port
(:mod:`media.bridge`), swapped between two frames through the seam in :mod:`media.peer`. The first
task to end the call records why and cancels the nursery; cleanup then tells both sides, bounded
in time, and reports once. A failure in this call cancels this call only.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Literal

import trio

from media.agent_client import AgentLinkError
from media.agent_peer import AgentPeer
from media.agent_pool import open_least_loaded
from media.bridge_agent import AgentInBridge
from media.bridge_core import BridgeEnded, BridgeFull
from media.bridge_transfer import BridgeTransfer, PendingCallee, TransferAttempt, TransferOutcome
from media.call_env import CallEnv
from media.call_tools import run_tool
from media.call_transfers import agent_says, agent_says_in_bridge, introduce
from media.hooks import AgentAssignment, CallInfo, CallRejected, HangupCause, LegCannotDo
from media.leg import Leg, LegDtmf
from media.leg_side import CallStats, LegSide
from media.peer import NoPeer
from media.transfer_plan import NO_OPTIONS, TransferOptions
from proto import messages as m

if TYPE_CHECKING:
    from media.bridge import Bridge

__all__ = ["Call", "CallEnv", "new_call_id"]  # CallEnv: imported from here by legs and tests
log = logging.getLogger(__name__)

# Before a transfer moves the caller, the agent's last words ("putting you through") play out.
AGENT_QUIET_S = 0.6
AGENT_QUIET_MAX_S = 10.0
REPLY_START_S = 3.0  # how long an agent may take to start answering a tool's result
INTRODUCTION_MAX_S = 20.0  # a warm transfer's introduction, at most
CLEANUP_TIMEOUT_S = 2.0
AgentOnJoin = Literal["park", "close", "participant"]
AfterBridge = Literal["agent", "hangup"]


class Call:
    """Implements :class:`media.hooks.CallHandle` for the control plane."""

    def __init__(self, leg: Leg, info: CallInfo, env: CallEnv) -> None:
        self._leg = leg
        self.info = info
        self._env = env
        self._cfg = env.config
        self._side = LegSide(
            leg,
            info.call_id,
            self._cfg.playout_max_ms,
            env.metrics,
            self.end,
            self._key_pressed,
            hold_s=self._cfg.playout_hold_ms / 1000,
        )
        self._nursery: trio.Nursery | None = None
        self._assignment = AgentAssignment()
        self._agent: AgentPeer | None = None
        self._bridge: Bridge | None = None
        self._cause: HangupCause | None = None
        self._reason = ""
        self._agent_in_bridge: AgentInBridge | None = None  # the agent as a participant
        self._settled = False  # False while the call's peer is being set up or changed
        self._transfer: TransferAttempt | None = None
        self._pending: PendingCallee | None = None  # set: this call is a transfer's far end

    @property
    def stats(self) -> CallStats:
        return self._side.stats

    @property
    def turn_latency_ms(self) -> list[int]:
        return self._side.stats.turn_latency_ms

    # ---- CallHandle -----------------------------------------------------------------------

    @property
    def call_id(self) -> str:
        return self.info.call_id

    @property
    def leg(self) -> str:
        return self._leg.kind

    @property
    def bridge_id(self) -> str | None:
        return self._bridge.bridge_id if self._bridge is not None else None

    def hangup(self, reason: str = "api") -> None:
        self.end("api", reason)

    def hangup_after_playout(self, reason: str) -> None:
        self._side.end_after_playout(reason)

    def say(self, text: str, interrupt: bool = False) -> None:
        if self._agent is None or self._agent.closed:
            raise LegCannotDo("the call has no agent")
        self._spawn(self._say, text, interrupt)

    async def _say(self, text: str, interrupt: bool) -> None:
        assert self._agent is not None
        if interrupt:  # cut the agent off; it then asks the core to flush, as on a barge-in
            await self._agent.send(m.Interruption())
        await self._agent.send(m.Text(text))

    def send_dtmf(self, digits: str) -> None:
        self._spawn(self._side.send_dtmf, digits)

    def transfer(self, target: str, options: TransferOptions = NO_OPTIONS) -> None:
        """A SIP leg transfers blind by REFER unless its agent's plan asks to bridge; an ARI
        leg as Asterisk does; any other leg, and a SIP leg's warm transfer, by an outbound call
        through the trunk bridged with the caller (:mod:`media.bridge_transfer`); each reports
        its outcome the same way."""
        plan = self._assignment.transfer.with_options(options)
        refer = getattr(self._leg, "refer", None)
        if refer is not None and (plan.by_refer or self.leg != "sip"):  # (ARI: Asterisk's own)
            attempt = refer(target)
            self._spawn(self._refer_after_announcement, attempt.run, plan.announcement)
            self._transfer = attempt
            return
        transfer = getattr(self._leg, "transfer", None)  # a leg that transfers by itself
        if transfer is not None:
            self._spawn(transfer, target)
            return
        desk, caller = self._env.transfers, self.info.caller
        attempt = BridgeTransfer.for_caller(target, desk, caller, self._assignment, plan)
        if self._transfer is not None and not self._transfer.done.is_set():
            raise LegCannotDo("a transfer is already in progress")
        if self._bridge is not None or not self._settled:
            raise LegCannotDo("the call is in a bridge, or between agents")
        self._spawn(attempt.run, self)
        self._transfer = attempt

    async def _refer_after_announcement(
        self, refer: Callable[[], Awaitable[None]], announcement: str
    ) -> None:
        """The caller hears the agent's announcement (and the sentence it said with the tool
        call) before the PBX takes the call away, as before ringback on a bridged transfer."""
        await self.announce(announcement)
        await refer()

    def switch_agent(self, assignment: AgentAssignment) -> None:
        """Hand the caller to another agent: the current link is told goodbye and closed,
        a new one opens with ``assignment``; the leg never notices."""
        if self._bridge is not None or not self._settled:
            raise LegCannotDo("the call is in a bridge, or between agents")
        self._spawn(self._switch_agent, assignment)

    def request_transfer(self, target: str, options: TransferOptions = NO_OPTIONS) -> None:
        if target.startswith("agent:"):
            if self._bridge is not None or not self._settled:
                raise LegCannotDo("the call is in a bridge, or between agents")
        else:
            self.transfer(target, options)
        self._spawn(self._env.hooks.transfer_requested, self, target)

    async def _switch_agent(self, assignment: AgentAssignment) -> None:
        self._settled = False
        self._side.attach(NoPeer())
        await self.close_agent("handed over to another agent")
        await self._drop_queued_audio()
        self._assignment = assignment
        self._settled = await self._start_agent()

    async def transfer_outcome(self) -> TransferOutcome:
        """How the transfer just started ended: answered, or failed and why (a leg that
        transfers by itself reports only ``transferring``: the PBX carries it on)."""
        attempt = self._transfer
        if attempt is None:
            return TransferOutcome("transferring")
        await attempt.done.wait()
        return attempt.outcome

    def join_bridge(
        self, bridge: Bridge, agent: AgentOnJoin = "park", after_reply: bool = False
    ) -> None:
        """Move the caller's audio into ``bridge``; the agent link is parked (kept for
        :meth:`leave_bridge`), closed, or a participant too (it hears the mix, all hear it).
        ``after_reply``: once the agent has said what it says to the tool result that asked
        for this ("putting you through now"). Raises :class:`LegCannotDo` where it cannot (or
        BridgeFull, BridgeEnded)."""
        if self._nursery is None or self._cause is not None:
            raise LegCannotDo("the call is not in progress")
        if self._bridge is not None:
            raise LegCannotDo(f"the call is already in bridge {self._bridge.bridge_id}")
        if not self._settled:  # its agent link is connecting: it would take the audio back
            raise LegCannotDo("the call is still connecting its agent; try again")
        if after_reply:
            bridge.core.check_room()
            self._bridge = bridge  # taken: nothing else moves the call meanwhile
            self._nursery.start_soon(self._join_after_reply, bridge, agent)
            return
        self._join(bridge, agent)

    async def _join_after_reply(self, bridge: Bridge, agent: AgentOnJoin) -> None:
        await self._side.wait_reply(REPLY_START_S, AGENT_QUIET_S, AGENT_QUIET_MAX_S)
        if self._bridge is not bridge:
            return  # taken out (or the bridge ended) before it was joined
        self._bridge = None
        try:
            self._join(bridge, agent)
        except (BridgeFull, BridgeEnded) as exc:  # the caller stays with its agent
            log.info("bridge not joined", extra={"call_id": self.call_id, "error": str(exc)})
            bridge.report_left(self.call_id)

    def _join(self, bridge: Bridge, agent: AgentOnJoin) -> None:
        assert self._nursery is not None
        port = bridge.join(self.call_id, self._side.play)  # raises BridgeFull, BridgeEnded
        self._bridge = bridge
        self._side.attach(port, live=True)
        if self._agent is not None and agent == "participant":
            try:
                self._agent_in_bridge = AgentInBridge(
                    bridge,
                    f"agent-{self.call_id}",
                    self._agent,
                    self._cfg.playout_max_ms,
                    self._nursery.start_soon,
                )
            except (BridgeFull, BridgeEnded):
                agent = "park"  # no room for the agent too: it waits aside
            else:
                self._agent.route_audio(self._agent_in_bridge)
        if self._agent is not None and agent != "participant":
            if agent == "close":
                self._nursery.start_soon(self._agent.close, "moved to a bridge")
            self._agent.parked = True
        self._nursery.start_soon(self._drop_queued_audio)

    def _agent_out_of_bridge(self) -> None:
        agent_in_bridge, self._agent_in_bridge = self._agent_in_bridge, None
        if agent_in_bridge is not None:
            agent_in_bridge.leave()
            if self._agent is not None:
                self._agent.route_audio(self._side)

    def leave_bridge(self, then: AfterBridge = "agent") -> None:
        """Take the caller out of its bridge, back to its agent (reconnected if it was
        closed) or hung up."""
        if self._left_bridge(then):
            assert self._nursery is not None
            self._nursery.start_soon(self._back_to_agent)

    async def return_to_agent(self) -> None:
        """As ``leave_bridge("agent")``, returning once the caller is with its agent."""
        if self._left_bridge("agent"):
            await self._back_to_agent()

    def _left_bridge(self, then: AfterBridge) -> bool:
        """Out of the bridge; True if the caller is to go back to its agent."""
        bridge, self._bridge = self._bridge, None
        if bridge is None:
            return False
        self._agent_out_of_bridge()
        if self.call_id in bridge.participants:
            bridge.leave(self.call_id)
        else:  # still waiting for the agent's reply: it never joined
            bridge.report_left(self.call_id)
        self._side.attach(NoPeer())
        if then == "hangup" or self._nursery is None or self._cause is not None:
            self.end("api", "left the bridge")
            return False
        return True

    # ---- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the call to its end. Never raises for the call's own failures."""
        env = self._env
        try:
            self._assignment = await env.hooks.call_created(self.info)
        except CallRejected as exc:
            log.info("call rejected", extra={"call_id": self.call_id, "reason": str(exc)})
            env.metrics.call_ends.labels(self.leg, "rejected", "rejected").inc()
            await self._leg.hangup(str(exc))
            return
        env.registry.add(self)
        env.metrics.calls_total.labels(self.leg).inc()
        env.metrics.calls_active.labels(self.leg).inc()
        self._pending = env.transfers.claim(self.info.params.get("transfer_token"))
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self._pending is None and not await self._start_agent():
                    return
                self._settled = True
                nursery.start_soon(self._side.reader)
                nursery.start_soon(self._side.pacer)
                # Shielded (bounded): a hangup that comes while the answer is being recorded
                # must not cancel its call_answered event, which would then never be sent.
                with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT_S):
                    await env.hooks.call_answered(self)
                if self._pending is not None:  # a transfer's callee answered: into its bridge
                    self._pending.answered_by(self)
        except Exception as exc:  # a bug in this call must not reach the server's nursery
            log.exception("call failed", extra={"call_id": self.call_id})
            self._record_end("error", f"internal: {type(exc).__name__}")
        finally:
            await self._cleanup()

    async def _start_agent(self) -> bool:
        """Connect the agent link and make it the call's peer; False (the call ends) if not."""
        assert self._nursery is not None
        try:
            link, lease = await open_least_loaded(
                self._env.agents,
                functools.partial(AgentPeer.open, self._assignment, self.info, self.leg, self._cfg),
                self._cfg.agent_connect_timeout_s,
            )
        except (AgentLinkError, trio.TooSlowError) as exc:
            reason = getattr(exc, "reason", "connect_timeout")
            self._env.metrics.link_errors.labels(reason).inc()
            self.end("error", f"agent unavailable: {reason}")
            return False
        side = self._side
        self._agent = AgentPeer(link, self, side, self._cfg, self._env.metrics, side.stats)
        await self._nursery.start(lease.held_while, self._agent.run)
        side.attach(self._agent)
        return True

    async def _back_to_agent(self) -> None:
        self._settled = False
        agent = self._agent
        await self._drop_queued_audio()
        if agent is not None and not agent.closed:
            agent.parked = False
            self._side.attach(agent)
            self._settled = True
        else:
            self._settled = await self._start_agent()

    async def _drop_queued_audio(self) -> None:
        """A new peer starts on a clean playout (the old one's audio would play late)."""
        marks = await self._side.interrupt()
        if self._agent is not None and not self._agent.closed:
            for name in marks:  # cleared marks count as played, as on a barge-in
                await self._agent.send(m.Mark(name))

    def _record_end(self, cause: HangupCause, reason: str) -> None:
        if self._cause is None:
            self._cause, self._reason = cause, reason

    def end(self, cause: HangupCause, reason: str) -> None:
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
        self._agent_out_of_bridge()
        if self._bridge is not None:
            if self.call_id in self._bridge.participants:
                self._bridge.leave(self.call_id)
            else:
                self._bridge.report_left(self.call_id)
        with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT_S):
            agent = self._agent
            if agent is not None and not agent.closed:
                if cause != "agent":
                    await agent.try_send(m.Hangup(reason=reason))
                await agent.link.aclose(1000, reason)
            await self._leg.hangup(reason)
        env.registry.remove(self.call_id)
        env.metrics.calls_active.labels(self.leg).dec()
        env.metrics.call_ends.labels(self.leg, cause, reason.split(":")[0][:40]).inc()
        log.info(
            "call ended",
            extra={"call_id": self.call_id, "cause": cause, "reason": reason, **asdict(self.stats)},
        )
        if self._pending is not None:
            self._pending.ended_with(reason)
        with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT_S):
            await env.hooks.call_hungup(self.call_id, cause, reason)

    # ---- what the agent link asks of the call (media.agent_peer.AgentOwner) ---------------

    @property
    def ending(self) -> bool:
        return self._side.goodbye is not None

    async def announce(self, text: str) -> None:
        """Before a transfer moves the caller: the agent says ``text`` and the caller hears it
        all ("": the agent's own sentence, even one still in its TTS; no agent: what is
        queued plays out)."""
        agent = self._agent if self._agent is not None and not self._agent.closed else None
        await agent_says(agent, self._side, text, (REPLY_START_S, AGENT_QUIET_S, AGENT_QUIET_MAX_S))

    async def introduce(self, bridge: Bridge, text: str) -> None:
        """A warm transfer: the agent joins ``bridge`` (hearing nobody), says ``text`` to the
        callee (the caller hears it too), and leaves once it has been heard."""
        agent, nursery = self._agent, self._nursery
        if agent is not None and not agent.closed and nursery is not None:
            participant_id, queue_ms = f"agent-{self.call_id}", self._cfg.playout_max_ms
            self._agent_in_bridge = agent_says_in_bridge(
                agent, bridge, participant_id, queue_ms, nursery
            )
            waits = (REPLY_START_S, AGENT_QUIET_S, INTRODUCTION_MAX_S)
            await introduce(agent, self._agent_in_bridge, text, waits)
            self._agent_out_of_bridge()

    async def close_agent(self, reason: str) -> None:
        if self._agent is not None and not self._agent.closed:
            await self._agent.close(reason)

    def end_transferred(self, reason: str) -> None:
        self.end("caller", reason)  # the far end of a blind transfer hung up

    def start_tool(self, call: m.FunctionCall) -> None:
        assert self._nursery is not None  # (the result goes to the agent that asked)
        self._nursery.start_soon(run_tool, self._env.hooks, self, self._agent, call)

    async def _key_pressed(self, event: LegDtmf) -> None:
        await self._env.hooks.dtmf_received(self.call_id, event.digit, event.duration_ms)

    async def agent_dtmf(self, digits: str) -> None:
        await self._side.send_dtmf(digits)

    async def agent_transcript(self, role: str, text: str, final: bool) -> None:
        await self._env.hooks.transcript(self.call_id, role, text, final)


def new_call_id() -> str:
    return str(uuid.uuid4())
