"""The seam between the media core and the control plane.

The media core knows calls, legs and audio; the control plane knows customers, agents, storage,
events and tools. A call reports to :class:`CallHooks` and the control plane acts on a call through
:class:`CallHandle`. :class:`StandaloneHooks` is what the core uses with no control plane (tests,
``bench``): a default agent, nothing stored, only the tools the core can do alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from media.transfer_plan import NO_OPTIONS, TransferOptions, TransferPlan
from proto.messages import JsonObject

if TYPE_CHECKING:
    from media.bridge import Bridge
    from media.bridge_transfer import TransferOutcome

HangupCause = Literal["caller", "agent", "api", "error", "timeout", "shutdown"]


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What a leg knows about a new call before the agent is chosen."""

    call_id: str
    leg: str
    leg_ref: str = ""  # AudioSocket UUID, SIP Call-ID, Twilio streamSid...
    caller: str = ""
    callee: str = ""
    remote_addr: str = ""
    params: JsonObject = field(default_factory=dict)  # leg-specific (Twilio customParameters...)


@dataclass(frozen=True, slots=True)
class AgentAssignment:
    """The agent a call runs and whose call it is."""

    agent_id: str = ""
    customer_id: str = ""
    config: JsonObject = field(default_factory=dict)
    transfer: TransferPlan = field(default_factory=TransferPlan)  # how it transfers to a number


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """A tool's result as the agent's LLM will see it."""

    result: Any
    is_error: bool = False


class CallRejected(Exception):
    """The control plane refuses a call (unknown UUID, customer over quota...)."""


class LegCannotDo(Exception):
    """The call's leg cannot perform this action (e.g. REFER on an AudioSocket leg)."""


class CallHandle(Protocol):
    """What the control plane may do to a live call. Every method returns at once."""

    @property
    def call_id(self) -> str: ...

    @property
    def leg(self) -> str: ...

    def hangup(self, reason: str = "api") -> None:
        """End the call now, on both sides."""

    def hangup_after_playout(self, reason: str) -> None:
        """End the call once the agent audio already queued has played (end_call)."""

    def say(self, text: str, interrupt: bool = False) -> None:
        """Have the agent speak ``text``: after what it is saying, or (``interrupt``) at once,
        cutting it off."""

    def send_dtmf(self, digits: str) -> None:
        """Send key presses to the caller's side (in-band tones where the leg has no signalling)."""

    def transfer(self, target: str, options: TransferOptions = NO_OPTIONS) -> None:
        """Hand the caller to ``target`` (a number or SIP URI): REFER on a SIP leg (blind, if
        its agent's plan says so), an outbound call bridged with the caller on any other, blind
        or warm (:mod:`media.transfer_plan`, ``options`` over the agent's plan); raises
        :class:`LegCannotDo` where it cannot."""

    def switch_agent(self, assignment: AgentAssignment) -> None:
        """Hand the call to another agent (a new agent link; the old one is closed)."""

    def request_transfer(self, target: str, options: TransferOptions = NO_OPTIONS) -> None:
        """A transfer asked for from outside the agent (the API): to a number or SIP URI it
        starts now, as :meth:`transfer` (raising where it cannot); to ``agent:<id>`` once the
        call may switch. The control plane then drives and reports the rest, as for the
        ``transfer_call`` tool (:meth:`CallHooks.transfer_requested`)."""

    async def transfer_outcome(self) -> TransferOutcome:
        """Wait for the transfer :meth:`transfer` started: answered, or failed and why."""

    @property
    def turn_latency_ms(self) -> Sequence[int]:
        """Each agent answer so far: the caller's final transcript to its first audio (at
        most the first 100); read when the call ends, for its summary."""

    @property
    def bridge_id(self) -> str | None:
        """The bridge the call's audio is in, if any."""

    def join_bridge(
        self,
        bridge: Bridge,
        agent: Literal["park", "close", "participant"] = "park",
        after_reply: bool = False,
    ) -> None:
        """Move the call's audio from its agent into ``bridge``; the agent link is parked
        (kept for :meth:`leave_bridge`), closed, or a participant too (hears the mix).
        ``after_reply``: once the agent has answered the tool result that asked for it.
        Raises :class:`LegCannotDo`."""

    def leave_bridge(self, then: Literal["agent", "hangup"] = "agent") -> None:
        """Take the call out of its bridge: back to its agent, or hang up."""


class CallHooks(Protocol):
    """What a call reports to the control plane. Awaited inline: keep each quick."""

    async def call_created(self, info: CallInfo) -> AgentAssignment:
        """A leg connected; choose the agent. Raise :class:`CallRejected` to refuse."""

    async def call_answered(self, call: CallHandle) -> None:
        """The agent link is up and audio flows."""

    async def call_hungup(self, call_id: str, cause: HangupCause, reason: str) -> None:
        """The call ended; ``reason`` is the detailed, loggable reason."""

    async def transcript(self, call_id: str, role: str, text: str, final: bool) -> None:
        """The agent reported what the caller or the agent said."""

    async def dtmf_received(self, call_id: str, digit: str, duration_ms: int) -> None:
        """The caller pressed a key (any leg; ``duration_ms`` 0 where the leg does not say),
        whoever the call talks with: its agent, a bridge, nobody."""

    async def execute_tool(self, call: CallHandle, name: str, arguments: JsonObject) -> ToolOutcome:
        """Run one of the agent's tool calls; never raises for a tool's own failure."""

    async def transfer_requested(self, call: CallHandle, target: str) -> None:
        """:meth:`CallHandle.request_transfer` ran: switch to ``agent:<id>``, or wait for the
        number's answer, and report the outcome (events); runs in the call's nursery."""


class StandaloneHooks:
    """No control plane: every call gets ``assignment``; only core-local tools run."""

    def __init__(self, assignment: AgentAssignment | None = None) -> None:
        self.assignment = assignment or AgentAssignment()

    async def call_created(self, info: CallInfo) -> AgentAssignment:
        return self.assignment

    async def call_answered(self, call: CallHandle) -> None:
        return None

    async def call_hungup(self, call_id: str, cause: HangupCause, reason: str) -> None:
        return None

    async def transcript(self, call_id: str, role: str, text: str, final: bool) -> None:
        return None

    async def dtmf_received(self, call_id: str, digit: str, duration_ms: int) -> None:
        return None

    async def execute_tool(self, call: CallHandle, name: str, arguments: JsonObject) -> ToolOutcome:
        if name == "end_call":
            call.hangup_after_playout(str(arguments.get("reason", "agent ended the call")))
            return ToolOutcome({"status": "ending"})
        if name == "send_dtmf":
            call.send_dtmf(str(arguments.get("digits", "")))
            return ToolOutcome({"status": "sent"})
        return ToolOutcome({"error": f"tool {name!r} needs the control plane"}, is_error=True)

    async def transfer_requested(self, call: CallHandle, target: str) -> None:
        return None  # no API, no events: nothing asks, nobody to tell
