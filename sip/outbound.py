"""Outbound SIP calls (``POST /v1.0/calls`` with ``leg: sip``): the leg of a call we place.

The call runs like an inbound one (:class:`media.call.Call`: a call row, its agent, events,
hangup through the API); only its leg differs. The INVITE goes out when the call first reads
or plays audio, that is once the control plane has accepted the call and its agent link is up,
so a refused call never rings anybody. Until the answer, reads and writes wait; an error
response, a timeout or no answer within ``ring_timeout_s`` ends the call with that reason
(``sip 486 Busy Here``, ``no answer in 60 s``), and a hangup before the answer sends CANCEL.
The control plane hears ``call_answered`` when the callee answers, not when the agent is ready.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import trio

from media.hooks import (
    AgentAssignment,
    CallHandle,
    CallHooks,
    CallInfo,
    HangupCause,
    LegCannotDo,
    ToolOutcome,
)
from media.leg import LegError, LegEvent, LegHangup
from proto.messages import JsonObject
from sip.leg import ReferTransfer, SipLeg

if TYPE_CHECKING:
    from sip.call_media import CallMedia, OfferedMedia

log = logging.getLogger(__name__)


class OriginateRefused(Exception):
    """A call cannot be placed; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code


class Dialling(Protocol):
    """What the leg needs from the SIP adapter's per-call signalling."""

    offered: OfferedMedia | None
    media: CallMedia | None
    failure: str | None
    outcome: trio.Event  # set once answered (media) or failed (failure)

    async def dial(self) -> None: ...

    async def answer(self) -> None: ...

    async def bye(self, cause: int = 0) -> None: ...

    async def refer(self, target: str) -> int: ...


class OutboundLeg:
    """A :class:`media.leg.Leg` that dials first; after the answer, a :class:`SipLeg`."""

    kind = "sip"
    self_paced = False

    def __init__(self, call: Dialling, ring_timeout_s: float) -> None:
        self._call = call
        self._ring_timeout_s = ring_timeout_s
        self.rate_hz = 8_000  # until the answer picks the codec (G.722: 16 kHz)
        self._inner: SipLeg | None = None
        self._dialled = False
        self._failure: str | None = None
        self._reported = False

    async def _answered(self) -> SipLeg | None:
        call = self._call
        if not self._dialled:
            self._dialled = True
            await call.dial()
        if self._inner is None and self._failure is None:
            with trio.move_on_after(self._ring_timeout_s):
                await call.outcome.wait()
            if self._inner is not None or self._failure is not None:
                pass  # the other waiter (receive or send) got there first
            elif not call.outcome.is_set():
                self._failure = f"no answer in {self._ring_timeout_s:g} s"
                await call.bye()  # CANCEL
            elif call.media is None:
                self._failure = call.failure or "not answered"
            else:
                self._inner = SipLeg(call.media.leg, call)
                self.rate_hz = self._inner.rate_hz
        return self._inner

    async def receive(self) -> LegEvent:
        inner = await self._answered()
        if inner is not None:
            return await inner.receive()
        if self._reported:
            raise LegError("receive_after_hangup")
        self._reported = True
        return LegHangup(self._failure or "not answered")

    async def send_audio(self, pcm16: bytes) -> None:
        inner = await self._answered()
        if inner is None:  # receive() reports why; the call is ending
            await trio.sleep_forever()
        else:
            await inner.send_audio(pcm16)

    async def clear(self) -> None:
        if self._inner is not None:
            await self._inner.clear()

    async def send_mark(self, name: str) -> None:
        if self._inner is not None:
            await self._inner.send_mark(name)

    async def send_dtmf(self, digits: str) -> None:
        if self._inner is not None:
            await self._inner.send_dtmf(digits)

    def refer(self, target: str) -> ReferTransfer:
        if self._inner is None:
            raise LegCannotDo("the call is not answered yet")
        return self._inner.refer(target)

    async def hangup(self, reason: str) -> None:
        if self._inner is not None:
            await self._inner.hangup(reason)
            return
        await self._call.bye()  # CANCEL, or nothing when it already failed


class PickupHooks:
    """The control plane's hooks, with ``call_answered`` held until the callee answers;
    ``accepted`` is set once the control plane has taken the call (its row exists)."""

    def __init__(self, hooks: CallHooks, picked_up: trio.Event) -> None:
        self._hooks = hooks
        self.picked_up = picked_up
        self.accepted = trio.Event()

    async def call_created(self, info: CallInfo) -> AgentAssignment:
        assignment = await self._hooks.call_created(info)
        self.accepted.set()
        return assignment

    async def call_answered(self, call: CallHandle) -> None:
        await self.picked_up.wait()  # cancelled with the call if it is never answered
        await self._hooks.call_answered(call)

    async def call_hungup(self, call_id: str, cause: HangupCause, reason: str) -> None:
        await self._hooks.call_hungup(call_id, cause, reason)

    async def transcript(self, call_id: str, role: str, text: str, final: bool) -> None:
        await self._hooks.transcript(call_id, role, text, final)

    async def dtmf_received(self, call_id: str, digit: str, duration_ms: int) -> None:
        await self._hooks.dtmf_received(call_id, digit, duration_ms)

    async def execute_tool(self, call: CallHandle, name: str, arguments: JsonObject) -> ToolOutcome:
        return await self._hooks.execute_tool(call, name, arguments)

    async def transfer_requested(self, call: CallHandle, target: str) -> None:
        await self._hooks.transfer_requested(call, target)


class Originator(Protocol):
    async def originate(self, source: str, destination: str, params: Mapping[str, str]) -> str:
        """Start a call; returns its id once it is registered, or raises OriginateRefused."""


class SipOutbound:
    """The control plane's handle on the SIP listener, attached once ``serve_sip`` runs, and
    on any other leg that places calls (``asterisk``: the ARI app, with ``--ari``)."""

    def __init__(self) -> None:
        self._server: Originator | None = None
        self._others: dict[str, Originator] = {}

    def attach(self, server: Originator) -> None:
        self._server = server

    def attach_leg(self, leg: str, originator: Originator) -> None:
        self._others[leg] = originator

    def places(self, leg: str) -> bool:
        return leg == "sip" or leg in self._others

    async def originate(
        self, source: str, destination: str, params: Mapping[str, str], leg: str = "sip"
    ) -> str:
        if leg != "sip":
            other = self._others.get(leg)
            if other is None:
                raise OriginateRefused(422, "cannot_originate", f"leg {leg!r} is not configured")
            return await other.originate(source, destination, params)
        if self._server is None:
            raise OriginateRefused(
                422, "cannot_originate", "the SIP leg is not configured (serve --sip HOST:PORT)"
            )
        return await self._server.originate(source, destination, params)
