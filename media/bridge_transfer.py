"""A transfer to a number on any leg: an outbound call bridged with the caller, blind or warm.

First the agent tells the caller (its plan's announcement, "please hold while I connect you",
heard before anything else happens); then the caller moves into a two-party bridge of its own
(no tones) and hears ringback; an outbound call is placed through the process's
:class:`Dialler` (the SIP trunk) carrying a one-time token, and the call that starts with that
token (:meth:`TransferDesk.claim`) runs with no agent: once its callee answers it joins the
bridge. Blind: the caller's agent link is closed at once. Warm: the agent joins the bridge too,
says its introduction (the callee hears it, and so does the caller), then leaves. Busy, no
answer or any failure before the answer brings the caller back to its agent, and the outcome
says why (the agent's tool result). Afterwards the two calls end together: either side hanging
up hangs up the other. The plan is :mod:`media.transfer_plan`'s."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import trio

from media.bridge import Bridge
from media.hooks import AgentAssignment, CallHandle, LegCannotDo
from media.mixer import tone_pcm
from media.transfer_plan import TransferPlan

log = logging.getLogger(__name__)

SETTLE_TIMEOUT_S = 120.0  # the trunk's own ring timeout (60 s by default) ends it sooner
RINGBACK_CYCLE_S = 6.0
# North American ringback (440 + 480 Hz, 2 s on, 4 s off): what callers expect while it rings.
RINGBACK = tone_pcm((440.0,), 2000) + tone_pcm((480.0,), 2000)


class Dialler(Protocol):
    """Places an outbound call (``sip.outbound.SipOutbound``); returns its call id, or raises
    (``OriginateRefused``) with the reason."""

    async def originate(self, source: str, destination: str, params: Mapping[str, str]) -> str: ...


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    status: Literal["transferring", "answered", "failed"]
    detail: str = ""


@dataclass(slots=True)
class PendingCallee:
    """The far end of a transfer, from the dial until its call ends."""

    answered: trio.Event = field(default_factory=trio.Event)
    ended: trio.Event = field(default_factory=trio.Event)
    callee: CallHandle | None = None
    reason: str = ""

    def answered_by(self, call: CallHandle) -> None:
        self.callee = call
        self.answered.set()

    def ended_with(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.ended.set()


class TransferAttempt(Protocol):
    """A transfer under way: a bridged outbound call (:mod:`media.bridge_transfer`) or a SIP
    REFER (:class:`sip.leg.ReferTransfer`); ``done`` is set once ``outcome`` is known."""

    done: trio.Event
    outcome: TransferOutcome


class TransferDesk:
    """Shared by every call of a process: the trunk (None: no transfers to numbers) and the
    callees placed for transfers, until their calls claim them."""

    def __init__(self, dialler: Dialler | None = None) -> None:
        self.dialler = dialler
        self._pending: dict[str, PendingCallee] = {}

    def expect(self) -> tuple[str, PendingCallee]:
        token = secrets.token_urlsafe(16)  # unguessable: a leg's own parameters cannot claim it
        pending = self._pending[token] = PendingCallee()
        return token, pending

    def claim(self, token: object) -> PendingCallee | None:
        if not isinstance(token, str) or not token:
            return None
        return self._pending.pop(token, None)

    def forget(self, token: str) -> None:
        self._pending.pop(token, None)


class TransferCaller(Protocol):
    """What a transfer needs from the caller's call (:class:`media.call.Call`)."""

    @property
    def call_id(self) -> str: ...

    def join_bridge(
        self, bridge: Bridge, agent: Literal["park", "close", "participant"] = "park"
    ) -> None: ...

    async def return_to_agent(self) -> None: ...

    async def announce(self, text: str) -> None: ...

    async def introduce(self, bridge: Bridge, text: str) -> None: ...

    async def close_agent(self, reason: str) -> None: ...

    def end_transferred(self, reason: str) -> None: ...


@dataclass(slots=True)
class BridgeTransfer:
    """One attempt; :attr:`done` is set with :attr:`outcome` once it is answered or failed."""

    target: str
    desk: TransferDesk
    source: str
    params: dict[str, str]
    plan: TransferPlan = field(default_factory=TransferPlan)
    done: trio.Event = field(default_factory=trio.Event)
    outcome: TransferOutcome = TransferOutcome("transferring")

    @classmethod
    def for_caller(
        cls,
        target: str,
        desk: TransferDesk,
        caller: str,
        assignment: AgentAssignment,
        plan: TransferPlan,
    ) -> BridgeTransfer:
        """The attempt for a caller (its number, if it has one, as the callee's caller id) and
        its agent's call; raises :class:`LegCannotDo` where there is no trunk."""
        if desk.dialler is None:
            raise LegCannotDo("no SIP trunk for transfers: set --sip-outbound or --sip-register")
        params = {"customer_id": assignment.customer_id, "agent_id": assignment.agent_id}
        source = caller if caller.startswith("+") else "anonymous"
        return cls(target, desk, source, params, plan)

    def _finish(self, outcome: TransferOutcome) -> None:
        if not self.done.is_set():
            self.outcome = outcome
            self.done.set()

    async def run(self, caller: TransferCaller) -> None:
        """Runs in the caller's nursery (for the rest of the call, once answered)."""
        bridge = Bridge(f"transfer-{caller.call_id}", tones=False)
        token, pending = self.desk.expect()
        try:
            await caller.announce(self.plan.announcement)
            async with trio.open_nursery() as nursery:
                await nursery.start(bridge.run)
                try:
                    caller.join_bridge(bridge, agent="park")
                except LegCannotDo as exc:  # moved meanwhile (a conference, another agent)
                    self._finish(TransferOutcome("failed", str(exc)))
                    nursery.cancel_scope.cancel()
                    return
                ringing = trio.CancelScope()
                nursery.start_soon(_ringback, bridge, caller.call_id, ringing)
                answered = await self._dial(token, pending, caller)
                ringing.cancel()
                bridge.core.mixer.clear_announcements()
                if answered and pending.callee is not None:
                    await self._connect(caller, bridge, pending, pending.callee)
                bridge.close()
        finally:
            self.desk.forget(token)
            self._finish(TransferOutcome("failed", "the call ended"))
            if pending.callee is not None and not pending.ended.is_set():
                pending.callee.hangup("the caller hung up")

    async def _connect(
        self, caller: TransferCaller, bridge: Bridge, pending: PendingCallee, callee: CallHandle
    ) -> None:
        """The far end answered: into the bridge with the caller, and the agent leaves (warm:
        once it has introduced the caller; a far end that hangs up meanwhile leaves the caller
        with its agent). Then until either side hangs up."""
        callee.join_bridge(bridge)
        if self.plan.mode == "warm":
            await caller.introduce(bridge, self.plan.introduction)
            if pending.ended.is_set():
                await caller.return_to_agent()
                reason = f"hung up during the introduction: {pending.reason}"
                self._finish(TransferOutcome("failed", reason))
                return
        await caller.close_agent("transferred")
        self._finish(TransferOutcome("answered", self.target))
        await pending.ended.wait()
        caller.end_transferred(f"transfer ended: {pending.reason}")

    async def _dial(self, token: str, pending: PendingCallee, caller: TransferCaller) -> bool:
        """Place the call and wait for its answer; False (caller back to its agent) if none."""
        assert self.desk.dialler is not None
        try:
            await self.desk.dialler.originate(
                self.source, self.target, {**self.params, "transfer_token": token}
            )
        except Exception as exc:  # OriginateRefused: the trunk says why; the caller goes on
            log.info("transfer not placed", extra={"call_id": caller.call_id, "error": str(exc)})
            pending.ended_with(str(exc) or type(exc).__name__)
        with trio.move_on_after(SETTLE_TIMEOUT_S):
            async with trio.open_nursery() as either:
                for event in (pending.answered, pending.ended):
                    either.start_soon(_cancel_when_set, event, either.cancel_scope)
        if pending.answered.is_set() and not pending.ended.is_set():
            return True
        await caller.return_to_agent()  # before the agent is told (it speaks to the caller)
        self._finish(TransferOutcome("failed", pending.reason or "no answer"))
        return False


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _ringback(bridge: Bridge, call_id: str, scope: trio.CancelScope) -> None:
    """Ring into the caller's ear only, until ``scope`` is cancelled."""
    with scope:
        while True:
            bridge.core.mixer.announce(RINGBACK, [call_id])
            await trio.sleep(RINGBACK_CYCLE_S)
