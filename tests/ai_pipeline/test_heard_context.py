"""After a barge-in the LLM context keeps what the caller heard (ai_pipeline/heard_context)."""

from __future__ import annotations

from typing import Any

from ai_pipeline.heard_context import keep_heard

GREETING = {"role": "assistant", "content": "Hello, how can I help?"}
ASKED = {"role": "user", "content": "Transfer me to sales."}
TOOL_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "transfer_call"}}],
}
TOOL_RESULT = {"role": "tool", "tool_call_id": "c1", "content": '{"status": "transferred"}'}


def said(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def test_the_reply_is_cut_to_the_words_heard() -> None:
    messages = [GREETING, ASKED, said("Okay. I am connecting you to sales now, please hold.")]
    assert keep_heard(messages, "Okay. I am") == [GREETING, ASKED, said("Okay. I am")]


def test_earlier_turns_tool_calls_and_their_results_stay() -> None:
    reply = [said("Let me see."), TOOL_CALL, TOOL_RESULT, said("Okay, you are through to sales.")]
    kept = keep_heard([GREETING, ASKED, *reply], "Let me see. Okay, you")
    assert kept == [GREETING, ASKED, said("Let me see."), TOOL_CALL, TOOL_RESULT, said("Okay, you")]


def test_a_reply_not_heard_at_all_leaves_only_what_happened() -> None:
    messages = [GREETING, ASKED, TOOL_CALL, TOOL_RESULT, said("Okay, connecting you.")]
    assert keep_heard(messages, "") == [GREETING, ASKED, TOOL_CALL, TOOL_RESULT]


def test_a_reply_heard_whole_is_unchanged() -> None:
    messages = [GREETING, ASKED, said("Okay, connecting you.")]
    assert keep_heard(messages, "Okay, connecting you.") == messages


def test_heard_words_the_context_left_out_are_added() -> None:
    """pipecat keeps no text of an utterance cut off before the TTS confirmed it."""
    assert keep_heard([], "Welcome to the") == [said("Welcome to the")]
    assert keep_heard([GREETING, ASKED], "Okay") == [GREETING, ASKED, said("Okay")]


def test_the_greeting_is_a_reply_too() -> None:
    assert keep_heard([GREETING], "Hello,") == [said("Hello,")]
