"""The control plane's side of :class:`media.hooks.CallHooks`: rows, events and tools per call.

A new call finds its agent by the ``agent_id`` its leg's parameters name, by AudioSocket UUID,
then by dialled number, then its customer's default agent (the bootstrap customer's, where the leg
had no credentials to tell whose call it is). The per-call context (customer, agent document) is
held only while the call lives, so tools and transcripts need no database read. Writes go database
first, then cache invalidation (inside :class:`Store`), then the event.

The media core awaits these inline and a storage outage must not take calls down with it: a
failure to create the call row refuses the call (:class:`CallRejected`, the caller hears a clean
hangup); a failure to record a later state change is logged with the call id and the call goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from control.auth import inactive_customer
from control.bootstrap import DEFAULT_CUSTOMER_NAME
from control.bridge import BridgeClosed
from control.call_end import end_call_once
from control.db.base import DatabaseError, now_ts
from control.events import EventBus
from control.store import Store
from control.summary_doc import turn_latency_figures
from control.tools import CallContext, ToolExecutor
from media.hooks import (
    AgentAssignment,
    CallHandle,
    CallInfo,
    CallRejected,
    HangupCause,
    ToolOutcome,
)
from proto.messages import JsonObject

log = logging.getLogger(__name__)


def _public_call(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "tm_delete"}


class ControlHooks:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        tools: ToolExecutor,
        holder: tuple[str, int] = ("", 0),
    ) -> None:
        self.store = store
        self.bus = bus
        self.tools = tools
        self.holder = holder  # (node id, worker id) recorded on each call row (control/nodes.py)
        self._live: dict[str, CallContext] = tools.contexts  # shared: agent:<id> transfers
        self._answered: dict[str, CallHandle] = {}  # until they end: their turn latencies

    async def _find_agent(self, info: CallInfo) -> dict[str, Any] | None:
        # A WebSocket leg's route sets customer_id from the socket's credentials: its caller
        # may pick only that customer's agents, and its default agent is that customer's.
        customer_id = str(info.params.get("customer_id", "")) or None
        agent_id = str(info.params.get("agent_id") or info.params.get("AGENT_ID") or "")
        if agent_id:
            return await self.store.get("agents", agent_id, customer_id)
        lookups = []
        if info.leg == "audiosocket" and info.leg_ref:
            lookups.append(("audiosocket", info.leg_ref.lower()))
        if info.callee:
            lookups.append(("number", info.callee))
        for kind, value in lookups:
            for route in await self.store.find("agent_routes", kind=kind, value=value):
                agent = await self.store.get("agents", route["agent_id"], customer_id)
                if agent is not None:
                    return agent
        if customer_id is None:
            customers = await self.store.find("customers", name=DEFAULT_CUSTOMER_NAME)
            customer_id = customers[0]["id"] if customers else None
        if customer_id is not None:
            agents = await self.store.find("agents", customer_id=customer_id, is_default=1)
            if agents:
                return agents[0]
        return None

    async def call_created(self, info: CallInfo) -> AgentAssignment:
        try:
            return await self._call_created(info)
        except (DatabaseError, BridgeClosed) as exc:
            log.error(
                "call refused: storage failed", extra={"call_id": info.call_id, "error": str(exc)}
            )
            raise CallRejected("control plane storage unavailable") from exc

    async def _call_created(self, info: CallInfo) -> AgentAssignment:
        agent = await self._find_agent(info)
        if agent is None:
            raise CallRejected(f"no agent for {info.leg} call {info.leg_ref or info.callee}")
        customer_id = agent["customer_id"]
        if await inactive_customer(self.store, customer_id) == "disabled":  # control/customers.py
            raise CallRejected(f"customer {customer_id} is disabled")
        row = await self.store.insert(
            "calls",
            {
                "id": info.call_id,
                "customer_id": customer_id,
                "agent_id": agent["id"],
                "leg": info.leg,
                "leg_ref": info.leg_ref[:128],
                "direction": str(info.params.get("direction") or "incoming"),
                "source": info.caller[:64],
                "destination": info.callee[:64],
                "status": "ringing",
                "hangup_cause": "",
                "hangup_reason": "",
                "duration_ms": 0,
                "tm_answer": None,
                "tm_hangup": None,
                "node_id": self.holder[0],
                "worker_id": self.holder[1],
            },
        )
        await self.bus.publish(customer_id, "call_created", info.call_id, _public_call(row))
        return await self.tools.start_agent(info.call_id, customer_id, agent)

    async def _update(self, call_id: str, event_type: str, values: dict[str, Any]) -> None:
        ctx = self._live.get(call_id)
        customer_id = ctx.customer_id if ctx else None
        try:
            row = await self.store.update("calls", call_id, customer_id, values)
            if row is not None:
                await self.bus.publish(row["customer_id"], event_type, call_id, _public_call(row))
        except (DatabaseError, BridgeClosed) as exc:
            log.error(
                "call state not recorded",
                extra={"call_id": call_id, "event": event_type, "error": str(exc)},
            )
            return
        if row is None:
            log.warning("call row missing", extra={"call_id": call_id})

    async def call_answered(self, call: CallHandle) -> None:
        self._answered[call.call_id] = call
        await self._update(
            call.call_id, "call_answered", {"status": "progressing", "tm_answer": now_ts()}
        )

    async def call_hungup(self, call_id: str, cause: HangupCause, reason: str) -> None:
        # Conditional (control/call_end.py): a survivor may have reaped this call already while
        # this node was paused; the row keeps that ending and its single call_hungup event.
        handle = self._answered.pop(call_id, None)
        latency = turn_latency_figures(handle.turn_latency_ms) if handle is not None else None
        try:
            row = await end_call_once(self.store, call_id, cause, reason)
            if row is not None:
                public = _public_call(row)
                if latency is not None:  # kept with the event: the call's summary reads it
                    public["turn_latency"] = latency
                await self.bus.publish(row["customer_id"], "call_hungup", call_id, public)
        except (DatabaseError, BridgeClosed) as exc:
            log.error(
                "call state not recorded",
                extra={"call_id": call_id, "event": "call_hungup", "error": str(exc)},
            )
        self._live.pop(call_id, None)

    async def transcript(self, call_id: str, role: str, text: str, final: bool) -> None:
        ctx = self._live.get(call_id)
        if ctx is None or not final:  # interim hypotheses are not worth a row and an event
            return
        values = {
            "customer_id": ctx.customer_id,
            "call_id": call_id,
            "role": role[:16],
            "text": text[:10_000],
        }
        try:
            row = await self.store.insert("transcripts", values)
            await self.bus.publish(
                ctx.customer_id,
                "transcript_created",
                call_id,
                {"id": row["id"], "role": row["role"], "text": row["text"]},
            )
        except (DatabaseError, BridgeClosed) as exc:
            log.error("transcript not recorded", extra={"call_id": call_id, "error": str(exc)})

    async def dtmf_received(self, call_id: str, digit: str, duration_ms: int) -> None:
        """A key the caller pressed, on any leg, as a ``dtmf_received`` event (the agent gets
        it on its link too; a conference participant's also as ``conference_participant_dtmf``)."""
        ctx = self._live.get(call_id)
        if ctx is None:
            return
        data = {"digit": digit, "duration_ms": duration_ms}
        try:
            await self.bus.publish(ctx.customer_id, "dtmf_received", call_id, data)
        except (DatabaseError, BridgeClosed) as exc:
            log.error("key press not recorded", extra={"call_id": call_id, "error": str(exc)})

    async def transfer_requested(self, call: CallHandle, target: str) -> None:
        ctx = self._live.get(call.call_id)
        if ctx is None:
            return
        try:
            await self.tools.requested_transfer(call, ctx, target)
        except (DatabaseError, BridgeClosed) as exc:
            log.error("transfer not reported", extra={"call_id": call.call_id, "error": str(exc)})

    async def execute_tool(self, call: CallHandle, name: str, arguments: JsonObject) -> ToolOutcome:
        ctx = self._live.get(call.call_id)
        if ctx is None:
            return ToolOutcome({"error": "unknown_call", "message": "call not live"}, True)
        try:
            return await self.tools.execute(call, ctx, name, dict(arguments))
        except (DatabaseError, BridgeClosed) as exc:
            log.error(
                "tool failed on storage",
                extra={"call_id": call.call_id, "tool": name, "error": str(exc)},
            )
            return ToolOutcome({"error": "unavailable", "message": "try again later"}, True)
