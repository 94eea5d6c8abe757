"""The agent's tool calls, executed for a live call; every failure is a structured result.

Built-ins: ``end_call``, ``transfer_call``, ``send_dtmf``, ``send_sms`` (stored and evented through
an :class:`SmsProvider`; no real carrier ships), ``join_conference``. Customer tools are
entries of the agent's ``tools`` list shaped ``{"name", "type": "webhook", "url", "secret"}``: the
arguments are POSTed, signed like webhooks, under a deadline, and the JSON answer is the result.
MCP servers' tools (``{"name", "type": "mcp", ...}``) are those listed when the call started
(control/mcp_agents.py), each run on its server under a deadline.
The LLM sees ``{"error": code, "message": ...}`` with ``is_error`` for anything that went wrong.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import Histogram

from ai_pipeline.agent_config import MAX_HISTORY_TEXT, MAX_HISTORY_TURNS
from control.agent_wire import agent_config_for_call
from control.conferences import ConferenceError, Conferences
from control.db import DatabaseError
from control.httpclient import MAX_RESPONSE_BYTES, HttpClientError, post
from control.mcp_agents import McpRoute, McpTools
from control.store import Store
from control.summary_doc import capped_json
from control.webhooks import signed_headers
from media.hooks import AgentAssignment, CallHandle, LegCannotDo, ToolOutcome
from media.transfer_plan import (
    MAX_SENTENCE_CHARS,
    TRANSFER_MODES,
    TransferOptions,
    caller_introduction,
    failure_sentence,
    plan_from_config,
)
from proto import safe_json

log = logging.getLogger(__name__)
BUILTIN_TOOLS = ("end_call", "transfer_call", "send_dtmf", "send_sms", "join_conference")
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
DTMF = re.compile(r"^[0-9*#A-Da-d]{1,32}$")
TRANSFER_TARGET = re.compile(
    r"^(\+[1-9][0-9]{6,14}|sips?:[^\s]{3,250}|[0-9]{2,15}|agent:[0-9a-fA-F-]{36})$"
)
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class SmsProvider(Protocol):
    """A carrier adapter: returns the message's status (queued, sent...)."""

    name: str

    async def send(self, destination: str, text: str) -> str: ...


class StoreOnlySms:
    """No carrier: messages are stored and evented with status ``queued``."""

    name = "none"

    async def send(self, destination: str, text: str) -> str:
        return "queued"


@dataclass(frozen=True, slots=True)
class CallContext:
    call_id: str
    customer_id: str
    agent: dict[str, Any]  # the agent's detail document
    # the tools its MCP servers offered when the call started: the only ones it may call there
    mcp_routes: dict[str, McpRoute] = field(default_factory=dict)


class ToolArgumentError(ValueError):
    pass


def _error(code: str, message: str) -> ToolOutcome:
    return ToolOutcome({"error": code, "message": message}, is_error=True)


def _arg(
    arguments: dict[str, Any],
    name: str,
    pattern: re.Pattern[str] | None = None,
    max_len: int = 255,
    required: bool = True,
) -> str:
    value = arguments.get(name)
    if value is None and not required:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ToolArgumentError(f"{name}: expected a non-empty string up to {max_len} chars")
    if pattern is not None and not pattern.match(value):
        raise ToolArgumentError(f"{name}: {value!r} is not valid")
    return value


Publish = Callable[[str, str, str, dict[str, Any]], Awaitable[object]]


class ToolExecutor:
    def __init__(
        self,
        store: Store,
        publish: Publish,
        latency: Histogram,
        sms: SmsProvider | None = None,
        timeout_s: float = 5.0,
        conferences: Conferences | None = None,
        mcp: McpTools | None = None,
    ) -> None:
        self.store = store
        self.publish = publish
        self.latency = latency
        self.sms = sms or StoreOnlySms()
        self.timeout_s = timeout_s
        self.conferences = conferences
        self.mcp = mcp or McpTools()
        # The live calls' contexts (ControlHooks shares its own): an agent:<id> transfer
        # switches one, so the new agent's own tools are the ones enabled.
        self.contexts: dict[str, CallContext] = {}

    async def start_agent(
        self,
        call_id: str,
        customer_id: str,
        agent: dict[str, Any],
        history: list[dict[str, str]] | None = None,
    ) -> AgentAssignment:
        """The call's link gets this agent (call start, agent:<id> transfer): its MCP servers
        are listed now, and the call may use what they offered; ``history``: the conversation
        so far, when handed over."""
        names, custom = self._enabled(CallContext(call_id, customer_id, agent["detail"]))
        offer = await self.mcp.offer(customer_id, agent["detail"], frozenset(names | set(custom)))
        self.contexts[call_id] = CallContext(call_id, customer_id, agent["detail"], offer.routes)
        config = agent_config_for_call(agent["detail"], offer.tools)
        if history:
            config["history"] = history
        plan = plan_from_config(agent["detail"].get("transfer"))
        return AgentAssignment(agent["id"], customer_id, config, plan)

    async def _history(self, ctx: CallContext) -> list[dict[str, str]]:
        """The call's final transcripts, oldest first: its last turns, as the agent config's
        ``history`` takes them (ai_pipeline/agent_config.py)."""
        rows = await self.store.find(
            "transcripts", call_id=ctx.call_id, customer_id=ctx.customer_id
        )
        turns = [r for r in rows if r["role"] in ("caller", "agent")][-MAX_HISTORY_TURNS:]
        return [{"role": r["role"], "text": r["text"][:MAX_HISTORY_TEXT]} for r in turns]

    async def execute(
        self, call: CallHandle, ctx: CallContext, name: str, arguments: dict[str, Any]
    ) -> ToolOutcome:
        started = time.perf_counter()
        try:
            outcome = await self._dispatch(call, ctx, name, arguments)
        except ToolArgumentError as exc:
            outcome = _error("bad_arguments", str(exc))
        self.latency.labels(tool=name if name in BUILTIN_TOOLS else "custom").observe(
            time.perf_counter() - started
        )
        try:  # the tool has acted: failing to record that must not turn it into an error
            await self.publish(
                ctx.customer_id,
                "tool_called",
                ctx.call_id,
                {
                    "name": name,
                    "arguments": arguments,
                    "is_error": outcome.is_error,
                    "result": capped_json(outcome.result),  # what the agent was told (summaries)
                },
            )
        except DatabaseError as exc:
            log.error(
                "tool_called event not recorded",
                extra={"call_id": ctx.call_id, "tool": name, "error": str(exc)},
            )
        return outcome

    def _enabled(self, ctx: CallContext) -> tuple[set[str], dict[str, dict[str, Any]]]:
        tools = ctx.agent.get("tools", list(BUILTIN_TOOLS[:3]))
        names = {t for t in tools if isinstance(t, str)}
        custom = {
            t["name"]: t
            for t in tools
            if isinstance(t, dict) and "name" in t and t.get("type") != "mcp"
        }
        return names, custom

    async def _dispatch(
        self, call: CallHandle, ctx: CallContext, name: str, args: dict[str, Any]
    ) -> ToolOutcome:
        names, custom = self._enabled(ctx)
        if name in ctx.mcp_routes:
            return await self.mcp.call(ctx.mcp_routes[name], args)
        if name in custom:
            return await self._webhook_tool(ctx, custom[name], args)
        if name not in names or name not in BUILTIN_TOOLS:
            return _error("unknown_tool", f"tool {name!r} is not enabled for this agent")
        if name == "end_call":
            call.hangup_after_playout(_arg(args, "reason", required=False) or "agent ended call")
            return ToolOutcome({"status": "ending"})
        if name == "send_dtmf":
            call.send_dtmf(_arg(args, "digits", DTMF, 32))
            return ToolOutcome({"status": "sent"})
        if name == "transfer_call":
            return await self._transfer(call, ctx, args)
        if name == "send_sms":
            return await self._send_sms(ctx, args)
        return await self._join_conference(call, ctx, args)

    async def _transfer(
        self, call: CallHandle, ctx: CallContext, args: dict[str, Any]
    ) -> ToolOutcome:
        """To ``agent:<id>``: the call's link switches to that agent. To a number or SIP URI:
        REFER on a SIP leg; on any other leg an outbound call bridged with the caller, and the
        result waits for its answer (busy, no answer: the caller is back, the agent told why).
        ``mode`` (blind, warm) and ``summary`` (warm: the callee's introduction) override the
        agent's ``transfer`` settings."""
        target = _arg(args, "target", TRANSFER_TARGET, required=False)
        mode = _arg(args, "mode", required=False, max_len=8)
        if mode and mode not in TRANSFER_MODES:
            raise ToolArgumentError(f"mode: {mode!r} is not blind or warm")
        summary = _arg(args, "summary", required=False, max_len=MAX_SENTENCE_CHARS)
        summary = await self._introduction(ctx, summary, mode)
        options = TransferOptions(TRANSFER_MODES.get(mode), introduction=summary)
        if not target:
            department = _arg(args, "department", max_len=64).lower()
            targets = ctx.agent.get("transfer_targets", {})
            target = targets.get(department, "") if isinstance(targets, dict) else ""
            if not target:
                return _error("unknown_department", f"no transfer target for {department!r}")
        if target.startswith("agent:"):
            return await self._to_agent(call, ctx, target)
        try:
            call.transfer(target, options)
        except LegCannotDo as exc:
            return _error("leg_cannot_transfer", str(exc) or f"{call.leg} cannot transfer")
        return await self._follow(call, ctx, target)

    async def _introduction(self, ctx: CallContext, summary: str, mode: str) -> str:
        """A warm transfer's introduction: the LLM's summary, else the agent's configured one,
        else one made of what the caller last said (the offline agent gives no summary)."""
        settings = ctx.agent.get("transfer")
        plan = plan_from_config(settings)
        configured = isinstance(settings, dict) and str(settings.get("introduction") or "").strip()
        if summary or (mode or plan.mode) != "warm" or configured:
            return summary
        said = [turn["text"] for turn in await self._history(ctx) if turn["role"] == "caller"]
        return caller_introduction(said[-1]) if said else ""

    async def requested_transfer(
        self, call: CallHandle, ctx: CallContext, target: str
    ) -> ToolOutcome:
        """``POST /v1.0/calls/<id>/transfer`` (started by :meth:`CallHandle.request_transfer`):
        the rest is the tool's, with its events. No tool call waits for the result, so the
        agent, with the caller again, is given a failure to say (``say``: in its own voice,
        and in its conversation)."""
        if target.startswith("agent:"):
            return await self._to_agent(call, ctx, target)
        outcome = await self._follow(call, ctx, target)
        if outcome.is_error:
            with contextlib.suppress(LegCannotDo):  # the call ended meanwhile
                call.say(failure_sentence(str(outcome.result.get("reason", ""))))
        return outcome

    async def _follow(self, call: CallHandle, ctx: CallContext, target: str) -> ToolOutcome:
        """Wait for the started transfer's outcome and tell it (events, the tool's result)."""
        outcome = await call.transfer_outcome()
        if outcome.status == "failed":
            return await self._failed(ctx, target, outcome.detail)
        await self.publish(
            ctx.customer_id,
            "call_transferred",
            ctx.call_id,
            {"target": target, "status": outcome.status},
        )
        status = "transferred" if outcome.status == "answered" else "transferring"
        return ToolOutcome({"status": status, "target": target})

    async def _failed(self, ctx: CallContext, target: str, reason: str) -> ToolOutcome:
        await self.publish(
            ctx.customer_id,
            "call_transfer_failed",
            ctx.call_id,
            {"target": target, "reason": reason},
        )
        message = f"the transfer to {target} failed: {reason}"
        return ToolOutcome({"error": "transfer_failed", "message": message, "reason": reason}, True)

    async def _to_agent(self, call: CallHandle, ctx: CallContext, target: str) -> ToolOutcome:
        agent_id = target.removeprefix("agent:").lower()
        agent = await self.store.get("agents", agent_id, ctx.customer_id)
        if agent is None:
            await self._failed(ctx, target, f"no agent {agent_id!r}")
            return _error("unknown_agent", f"no agent {agent_id!r}")
        history = await self._history(ctx)
        assignment = await self.start_agent(ctx.call_id, ctx.customer_id, agent, history)
        try:
            call.switch_agent(assignment)
        except LegCannotDo as exc:
            self.contexts[ctx.call_id] = ctx  # still the first agent's call
            await self._failed(ctx, target, str(exc))
            return _error("leg_cannot_transfer", str(exc))
        await self.store.update("calls", ctx.call_id, ctx.customer_id, {"agent_id": agent["id"]})
        await self.publish(
            ctx.customer_id, "call_transferred", ctx.call_id, {"target": target, "status": "agent"}
        )
        return ToolOutcome({"status": "transferred", "target": target})

    async def _send_sms(self, ctx: CallContext, args: dict[str, Any]) -> ToolOutcome:
        destination = _arg(args, "to", E164, 16)
        text = _arg(args, "text", max_len=1600)
        status = await self.sms.send(destination, text)
        row = await self.store.insert(
            "messages",
            {
                "customer_id": ctx.customer_id,
                "call_id": ctx.call_id,
                "destination": destination,
                "text": text,
                "status": status,
                "provider": self.sms.name,
            },
        )
        await self.publish(
            ctx.customer_id,
            "message_created",
            row["id"],
            {"call_id": ctx.call_id, "destination": destination, "status": status},
        )
        return ToolOutcome({"status": status, "message_id": row["id"]})

    async def _join_conference(
        self, call: CallHandle, ctx: CallContext, args: dict[str, Any]
    ) -> ToolOutcome:
        """The caller's audio moves into the conference's bridge (control/conferences.py);
        this agent is parked meanwhile, and gets the caller back when it leaves."""
        conference_id = _arg(args, "conference_id", UUID_RE, 36)
        conf = await self.store.get("conferences", conference_id, ctx.customer_id)
        if conf is None or conf["status"] == "ended":
            return _error("not_found", "no such active conference")
        if self.conferences is None:
            return _error("unavailable", "conference bridges are not running")
        try:
            part = await self.conferences.add_call(
                conf, ctx.call_id, handle=call, after_agent_reply=True
            )
        except ConferenceError as exc:
            return _error(exc.code, str(exc))
        return ToolOutcome(
            {"status": "joined", "conference_id": conference_id, "participant_id": part["id"]}
        )

    async def _webhook_tool(
        self, ctx: CallContext, tool: dict[str, Any], args: dict[str, Any]
    ) -> ToolOutcome:
        body = json.dumps(
            {"call_id": ctx.call_id, "tool": tool["name"], "arguments": args}
        ).encode()
        headers = signed_headers(str(tool.get("secret", "")), "tool_call", ctx.call_id, body)
        try:
            resp = await post(
                str(tool.get("url", "")),
                body,
                headers,
                self.timeout_s,
                verify_tls=tool.get("tls_verify", True) is not False,
            )
        except HttpClientError as exc:
            return _error("tool_unreachable", str(exc))
        if not 200 <= resp.status_code < 300:
            return _error("tool_failed", f"HTTP {resp.status_code}")
        try:
            answer = safe_json.loads(resp.body, max_chars=MAX_RESPONSE_BYTES) if resp.body else {}
        except safe_json.JsonInputError as exc:
            return _error("tool_bad_response", f"the tool's answer is not acceptable JSON: {exc}")
        return ToolOutcome(answer)
