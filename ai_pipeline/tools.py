"""The agent's tools: their schemas, and running them through the media core over the agent link.

Tools are executed by the call, not by the agent: the agent sends a ``FunctionCall`` frame, the
media core runs it through the control plane (transfer, DTMF, SMS, conferences, webhooks...) and
answers with a ``FunctionCallResult``. Every built-in the control plane's API accepts is known
here, so an agent saved with any of them starts. :class:`LinkToolRunner` is the pipecat function
handler that does that round trip, so any pipecat LLM service (ours or ``OpenAILLMService``)
calls tools the same way.

A tool that does not answer in time gets an error result, so the LLM can tell the caller and the
pipeline never waits forever. ``end_call`` is the one tool the agent runs itself: it has to say
goodbye first and only then hang up, which only the agent's output knows how to order.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import FunctionCallResultProperties
from pipecat.services.llm_service import FunctionCallParams

from proto.messages import FunctionCall, FunctionCallResult, LinkFrame

log = logging.getLogger(__name__)

DEPARTMENTS = ("sales", "billing", "support")
TRANSFER_TIMEOUT_SECS = 150.0
"""transfer_call's result waits for the transfer's answer (the new call answered, busy, no
answer...), as long as the core waits for it (media/call_tools.py TRANSFER_TOOL_TIMEOUT_S): a
shorter wait would tell the caller it failed while it may still go through."""

END_CALL = "end_call"
TRANSFER_CALL = "transfer_call"
SEND_DTMF = "send_dtmf"
SEND_SMS = "send_sms"
JOIN_CONFERENCE = "join_conference"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool as the LLM sees it: JSON-schema ``properties`` and ``required``."""

    name: str
    description: str
    properties: Mapping[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()

    def to_function_schema(self) -> FunctionSchema:
        return FunctionSchema(
            name=self.name,
            description=self.description,
            properties=dict(self.properties),
            required=list(self.required),
        )


BUILTIN_TOOLS: dict[str, ToolSpec] = {
    TRANSFER_CALL: ToolSpec(
        TRANSFER_CALL,
        "Transfer the caller to a department.",
        {
            "department": {"type": "string", "enum": list(DEPARTMENTS)},
            "mode": {
                "type": "string",
                "enum": ["blind", "warm"],
                "description": "warm: stay on the line to introduce the caller, then leave; "
                "blind: leave once they answer (leave it out for the agent's setting)",
            },
            "summary": {
                "type": "string",
                "maxLength": 500,
                "description": "warm: one sentence said to the person answering: who is "
                "calling and what they need",
            },
        },
        ("department",),
    ),
    END_CALL: ToolSpec(END_CALL, "Say goodbye and hang up when the caller is done."),
    SEND_DTMF: ToolSpec(
        SEND_DTMF,
        "Send touch-tone digits on the call (e.g. to navigate a phone menu).",
        {"digits": {"type": "string", "pattern": "^[0-9*#A-D]+$"}},
        ("digits",),
    ),
    SEND_SMS: ToolSpec(
        SEND_SMS,
        "Send a text message (SMS), by default to the caller's own phone.",
        {
            "text": {"type": "string", "maxLength": 1600, "description": "the message"},
            "to": {
                "type": "string",
                "pattern": "^\\+[1-9][0-9]{6,14}$",
                "description": "E.164 number; leave it out to text the caller",
            },
        },
        ("text",),
    ),
    JOIN_CONFERENCE: ToolSpec(
        JOIN_CONFERENCE,
        "Move the caller into a conference call.",
        {
            "conference_id": {
                "type": "string",
                "description": "the conference's id; leave it out for the agent's default one",
            }
        },
    ),
}
BUILTIN_TOOL_NAMES = tuple(BUILTIN_TOOLS)
DEFAULT_TOOL_NAMES = (TRANSFER_CALL, END_CALL, SEND_DTMF)
"""An agent config without ``tools`` gets these (the control plane enables the same three)."""

_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
MAX_SCHEMA_DEPTH = 8
"""How deep ``$ref``s are followed; deeper (a recursive model) is described as any object."""


def inline_refs(node: Any, defs: Mapping[str, Any], depth: int = 0) -> Any:
    """``{"$ref": "#/$defs/X"}`` replaced by ``X`` itself, all the way down.

    A tool's parameters reach the LLM as ``properties`` and ``required`` only (pipecat's
    ``FunctionSchema``), so a schema's own ``$defs`` (an MCP tool taking a pydantic model, a
    webhook tool written that way) would leave dangling references that an OpenAI-compatible
    server refuses, failing every turn of the call."""
    if isinstance(node, list):
        return [inline_refs(item, defs, depth) for item in node]
    if not isinstance(node, Mapping):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.removeprefix("#/$defs/").removeprefix("#/definitions/")
        if name == ref or name not in defs:
            raise ValueError(f"parameters: unresolvable $ref {ref!r}")
        if depth >= MAX_SCHEMA_DEPTH:
            return {"type": "object"}
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return inline_refs({**defs[name], **siblings}, defs, depth + 1)
    return {k: inline_refs(v, defs, depth) for k, v in node.items()}


def _parse_one(raw: Any) -> ToolSpec:
    if isinstance(raw, str):
        if raw not in BUILTIN_TOOLS:
            raise ValueError(f"unknown built-in tool {raw!r}; known: {', '.join(BUILTIN_TOOLS)}")
        return BUILTIN_TOOLS[raw]
    if not isinstance(raw, Mapping):
        raise ValueError("each tool must be a built-in name or an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name or not set(name.lower()) <= _NAME_OK:
        raise ValueError(f"tool name must be [A-Za-z0-9_-]+, got {name!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"{name}.description must be a string")
    params = raw.get("parameters", {})
    if not isinstance(params, Mapping):
        raise ValueError(f"{name}.parameters must be a JSON-schema object")
    properties = params.get("properties", {})
    required = params.get("required", [])
    if not isinstance(properties, Mapping):
        raise ValueError(f"{name}.parameters.properties must be an object")
    defs = params.get("$defs", params.get("definitions", {}))
    if not isinstance(defs, Mapping):
        raise ValueError(f"{name}.parameters.$defs must be an object")
    try:
        properties = inline_refs(properties, defs)
    except ValueError as exc:
        raise ValueError(f"{name}.{exc}") from None
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ValueError(f"{name}.parameters.required must be a list of names")
    missing = [r for r in required if r not in properties]
    if missing:
        raise ValueError(f"{name}: required {missing} not in properties")
    return ToolSpec(name, description, dict(properties), tuple(required))


def parse_tool_specs(raw: Any) -> tuple[ToolSpec, ...]:
    """Built-in names (``"transfer_call"``) and custom ``{name, description, parameters}``."""
    if not isinstance(raw, list):
        raise ValueError("must be a list")
    specs = tuple(_parse_one(item) for item in raw)
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate tool(s) {duplicates}")
    return specs


def tools_schema(specs: Sequence[ToolSpec]) -> ToolsSchema:
    return ToolsSchema(standard_tools=[s.to_function_schema() for s in specs])


SendFrame = Callable[[LinkFrame], Awaitable[None]]
EndCall = Callable[[], Awaitable[None]]


class LinkToolRunner:
    """Per-call pipecat function handler: tool calls out as frames, results back in.

    ``resolve`` is called by the link reader for every ``FunctionCallResult``; the handler that
    sent the matching ``FunctionCall`` is waiting on a future keyed by ``tool_call_id``.
    """

    def __init__(
        self,
        send: SendFrame,
        end_call: EndCall,
        *,
        timeout_secs: float,
        defaults: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self._send = send
        self._end_call = end_call
        self._timeout_secs = timeout_secs
        self._defaults = defaults or {}
        """Per tool, arguments the call knows and the LLM may leave out (the caller's number)."""
        self._pending: dict[str, asyncio.Future[FunctionCallResult]] = {}
        self._ids = itertools.count(1)
        self.late_results = 0
        """Results that arrived after their call timed out (or for no call at all)."""

    @property
    def pending(self) -> int:
        return len(self._pending)

    def resolve(self, result: FunctionCallResult) -> None:
        future = self._pending.pop(result.tool_call_id, None)
        if future is None or future.done():
            self.late_results += 1
            log.warning(
                "tool result %s (%s) matches no pending call", result.tool_call_id, result.name
            )
            return
        future.set_result(result)

    async def handle(self, params: FunctionCallParams) -> None:
        """The handler registered with the LLM service for every tool name."""
        if params.function_name == END_CALL:
            # No LLM turn after this: the goodbye is spoken by end_call itself.
            await params.result_callback(
                {"ok": True}, properties=FunctionCallResultProperties(run_llm=False)
            )
            await self._end_call()
            return
        # Some OpenAI-compatible servers omit ids; the core needs one to answer.
        tool_call_id = params.tool_call_id or f"call_{next(self._ids)}"
        timeout_secs = self._timeout_secs
        if params.function_name == TRANSFER_CALL:
            timeout_secs = max(timeout_secs, TRANSFER_TIMEOUT_SECS)
        future: asyncio.Future[FunctionCallResult] = asyncio.get_running_loop().create_future()
        self._pending[tool_call_id] = future
        try:
            arguments = {**self._defaults.get(params.function_name, {}), **params.arguments}
            await self._send(FunctionCall(tool_call_id, params.function_name, arguments))
            result = await asyncio.wait_for(future, timeout_secs)
        except TimeoutError:
            log.warning(
                "tool %s (%s) timed out after %.1f s",
                params.function_name,
                tool_call_id,
                timeout_secs,
            )
            await params.result_callback(
                {"error": f"{params.function_name} timed out after {timeout_secs:g} s"}
            )
            return
        finally:
            self._pending.pop(tool_call_id, None)
        if result.is_error:
            await params.result_callback({"error": result.result})
        else:
            await params.result_callback(result.result)

    def cancel_all(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
