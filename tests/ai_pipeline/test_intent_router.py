"""The offline intent router, alone and as a pipecat LLM service in a real pipeline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pipecat.frames.frames import (
    FunctionCallInProgressFrame,
    LLMContextFrame,
    LLMTextFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.llm_service import FunctionCallParams
from pipecat.tests.utils import run_test

from ai_pipeline.engines.hearing import CallerHearing
from ai_pipeline.engines.intent_router import (
    FALLBACK_REPLY,
    MISS_REPLY,
    TOOL_ERROR_REPLY,
    Intent,
    IntentRouter,
    IntentRouterLLMService,
)
from ai_pipeline.engines.knowledge import KnowledgeEntry, KnowledgeIndex
from ai_pipeline.engines.models import ModelStore
from ai_pipeline.tools import BUILTIN_TOOLS, tools_schema


@pytest.fixture(scope="module")
def router(models: ModelStore) -> IntentRouter:
    return models.intent_router()


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        # Whisper's real output on rtp_fixtures/speech/transfer_sales.wav: "meat" for "me".
        ("Transfer meat to sales, please.", "transfer_sales"),
        ("put me through to tech support", "transfer_support"),
        ("I was charged two times this month", "transfer_billing"),
        ("can I speak to someone about buying a phone", "transfer_sales"),
        ("That's all. Thank you. Goodbye.", "end_call"),
        ("hello?", "help"),
        ("The caller pressed 2", "transfer_billing"),
        ("the caller pressed 0#", "end_call"),
        ("Can you text me the details?", "send_sms"),
        ("could you send the address to my phone", "send_sms"),
        ("Please put me into the conference call.", "join_conference"),
    ],
)
def test_routes_phone_phrases(router: IntentRouter, text: str, intent: str) -> None:
    decision = router.route(text)
    assert decision.intent is not None, (text, decision.score)
    assert decision.intent.name == intent


@pytest.mark.parametrize(
    "text", ["blue elephants dance at midnight", "", "   ", "The caller pressed 7"]
)
def test_unrelated_or_empty_is_no_intent(router: IntentRouter, text: str) -> None:
    assert router.route(text).intent is None


def test_disallowed_tools_are_never_chosen(router: IntentRouter) -> None:
    decision = router.route("transfer me to sales", frozenset({"end_call"}))
    assert decision.intent is None or decision.intent.tool != "transfer_call"
    assert router.route("The caller pressed 1", frozenset()).intent is None


def test_bad_router_definitions(router: IntentRouter) -> None:
    with pytest.raises(ValueError, match="at least one intent"):
        IntentRouter(router._encoder, [])
    with pytest.raises(ValueError, match="unknown intent"):
        IntentRouter(router._encoder, [Intent("a", ("hi",))], dtmf_menu={"1": "b"})


def _context(*messages: dict[str, Any]) -> LLMContext:
    return LLMContext(list(messages), tools=tools_schema(list(BUILTIN_TOOLS.values())))  # type: ignore[arg-type]


def _texts(frames: Any) -> list[str]:
    return [f.text for f in frames if isinstance(f, LLMTextFrame)]


def test_service_calls_transfer_tool_then_replies(router: IntentRouter) -> None:
    async def main() -> None:
        calls: list[tuple[str, dict[str, Any]]] = []
        llm = IntentRouterLLMService(router)

        async def handler(params: FunctionCallParams) -> None:
            calls.append((params.function_name, dict(params.arguments)))
            await params.result_callback({"status": "transferred"})

        llm.register_function("transfer_call", handler)
        context = _context({"role": "user", "content": "transfer me to sales please"})
        down, _up = await run_test(llm, frames_to_send=[LLMContextFrame(context)])
        assert calls == [("transfer_call", {"department": "sales"})]
        assert any(isinstance(f, FunctionCallInProgressFrame) for f in down)
        assert _texts(down) == []  # nothing said until the result is in

    asyncio.run(main())


def _after_transfer(tool_result: str) -> LLMContext:
    """A context whose last message is the result of a transfer_call to billing."""
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "transfer_call", "arguments": '{"department":"billing"}'},
    }
    return _context(
        {"role": "user", "content": "billing please"},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": tool_result},
    )


def test_service_replies_after_tool_result(router: IntentRouter) -> None:
    async def main() -> None:
        llm = IntentRouterLLMService(router)
        llm._last_intent = router.intents["transfer_billing"]
        ok = _after_transfer('{"status": "ok"}')
        down, _ = await run_test(llm, frames_to_send=[LLMContextFrame(ok)])
        assert _texts(down) == ["Okay, I'm connecting you to billing now."]

        failed = _after_transfer('{"error": "timed out"}')
        down, _ = await run_test(
            IntentRouterLLMService(router), frames_to_send=[LLMContextFrame(failed)]
        )
        assert _texts(down) == [TOOL_ERROR_REPLY]

    asyncio.run(main())


def _reply(llm: IntentRouterLLMService, said: str) -> list[str]:
    async def main() -> list[str]:
        context = _context({"role": "user", "content": said})
        down, _ = await run_test(llm, frames_to_send=[LLMContextFrame(context)])
        return _texts(down)

    return asyncio.run(main())


def test_words_heard_clearly_but_not_understood_get_an_honest_miss(router: IntentRouter) -> None:
    llm = IntentRouterLLMService(router)
    assert _reply(llm, "blue elephants dance at midnight") == [MISS_REPLY]
    assert llm.decisions[-1].intent is None


def test_didnt_catch_that_is_for_words_the_stt_was_unsure_of(router: IntentRouter) -> None:
    hearing = CallerHearing()
    hearing.heard(confident=True)
    hearing.heard(confident=False)  # one unsure segment in the turn is enough to ask again
    unsure = IntentRouterLLMService(router, hearing=hearing)
    assert _reply(unsure, "I never slept in about my jail") == [FALLBACK_REPLY]
    # The next turn was heard clearly (a pipeline run per turn here; one pipeline per call
    # in service): an honest miss again.
    hearing.heard(confident=True)
    sure = IntentRouterLLMService(router, hearing=hearing)
    assert _reply(sure, "blue elephants dance at midnight") == [MISS_REPLY]


KNOWLEDGE = (
    KnowledgeEntry(
        ("What are your opening hours on Saturday?", "Saturday hours"),
        "On Saturdays we are open from nine to one.",
    ),
    KnowledgeEntry(("Where are you located?",), "We are at 12 Harbour Street."),
    KnowledgeEntry(("Do you sell gift cards?",), "Yes, gift cards from ten to two hundred."),
)


@pytest.fixture(scope="module")
def knowledge(router: IntentRouter) -> KnowledgeIndex:
    return KnowledgeIndex(router.encoder, KNOWLEDGE)


@pytest.mark.parametrize(
    ("said", "answer"),
    [
        ("When are you open on Saturday?", KNOWLEDGE[0].answer),  # the issue's own question
        ("what's your address", KNOWLEDGE[1].answer),
        ("can I buy a gift card", KNOWLEDGE[2].answer),  # the router alone: transfer to sales
    ],
)
def test_a_question_on_the_knowledge_list_is_answered(
    router: IntentRouter, knowledge: KnowledgeIndex, said: str, answer: str
) -> None:
    assert _reply(IntentRouterLLMService(router, knowledge=knowledge), said) == [answer]


@pytest.mark.parametrize(
    "said", ["who is the president", "do you have parking", "what's the weather like"]
)
def test_a_question_off_the_list_is_an_honest_miss(
    router: IntentRouter, knowledge: KnowledgeIndex, said: str
) -> None:
    assert _reply(IntentRouterLLMService(router, knowledge=knowledge), said) == [MISS_REPLY]


def test_the_knowledge_list_does_not_take_the_intents_requests(
    router: IntentRouter, knowledge: KnowledgeIndex
) -> None:
    llm = IntentRouterLLMService(router, knowledge=knowledge)
    calls = _routed_calls(llm, _context({"role": "user", "content": "transfer me to sales"}))
    assert calls == [("transfer_call", {"department": "sales"})]


def _routed_calls(llm: IntentRouterLLMService, context: LLMContext) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []

    async def handler(params: FunctionCallParams) -> None:
        calls.append((params.function_name, dict(params.arguments)))
        await params.result_callback({"status": "ok"})

    async def main() -> None:
        for name in BUILTIN_TOOLS:
            llm.register_function(name, handler)
        await run_test(llm, frames_to_send=[LLMContextFrame(context)])

    asyncio.run(main())
    return calls


def test_text_me_the_details_texts_what_the_agent_just_said(router: IntentRouter) -> None:
    said = "We are open from nine to five, Monday to Friday."
    context = _context(
        {"role": "assistant", "content": said},
        {"role": "user", "content": "can you text me the details"},
    )
    # The caller's number is the tool runner's to add (tests/ai_pipeline/test_tools.py).
    assert _routed_calls(IntentRouterLLMService(router), context) == [("send_sms", {"text": said})]


def test_join_conference_is_routed_only_where_a_default_conference_is_named(
    router: IntentRouter,
) -> None:
    asked = {"role": "user", "content": "please put me into the conference call"}
    assert _routed_calls(IntentRouterLLMService(router), _context(asked)) == [
        ("join_conference", {})
    ]
    unroutable = frozenset({"join_conference"})  # no default conference: the factory's choice
    llm = IntentRouterLLMService(router, unroutable_tools=unroutable)
    assert all(name != "join_conference" for name, _ in _routed_calls(llm, _context(asked)))
