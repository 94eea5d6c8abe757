"""The agent answers questions from its knowledge list, says so honestly when it cannot, and asks
again only when it did not hear clearly: the whole agent (VAD, Whisper, router, piper) on a call.

"What time are you open tomorrow?" (``rtp_fixtures/speech/opening_hours.wav``) was answered
"Sorry, I didn't catch that" after Whisper heard every word right.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ai_pipeline.agent_config import AgentConfigError, parse_agent_config
from ai_pipeline.engines.intent_router import FALLBACK_REPLY, MISS_REPLY
from ai_pipeline.engines.knowledge import KnowledgeError, parse_knowledge
from ai_pipeline.engines.models import ModelStore
from control.agent_wire import agent_config_for_call
from control.schemas import AgentBody
from proto.messages import Transcript
from tests.ai_pipeline.call_harness import SPEED, Call, agent_text, run_scenario
from tests.ai_pipeline.memory_link import load_wav_pcm16, play, silence_ms

HOURS = "We are open from nine to five, Monday to Saturday."
KNOWLEDGE = [
    {"questions": ["When are you open?", "opening hours"], "answer": HOURS},
    {"questions": ["Where are you located?"], "answer": "We are at 12 Harbour Street."},
]


def agent_reply_to(models: ModelStore, config: dict[str, Any], pcm16: bytes) -> str:
    replies: list[str] = []

    async def main() -> None:
        call = Call(models, {"greeting": "", **config})
        await play(call.link, silence_ms(200) + pcm16 + silence_ms(1200), speed=SPEED)
        _, reply = await call.wait_for(Transcript, agent_text, within_s=30)
        replies.append(reply.text)
        await call.finish()

    run_scenario(main)
    return replies[0]


def test_a_question_on_the_knowledge_list_is_answered(models: ModelStore) -> None:
    reply = agent_reply_to(models, {"knowledge": KNOWLEDGE}, load_wav_pcm16("opening_hours.wav"))
    assert reply == HOURS


def test_a_clearly_heard_question_off_the_list_gets_an_honest_miss(models: ModelStore) -> None:
    reply = agent_reply_to(models, {}, load_wav_pcm16("opening_hours.wav"))
    assert reply == MISS_REPLY


def test_didnt_catch_that_is_kept_for_speech_whisper_was_unsure_of(models: ModelStore) -> None:
    """Speech-like sound without words (the question played backwards: the VAD hears speech,
    Whisper guesses "Or I'm gonna blow your mask up" at an average log-probability near -1)."""
    backwards = np.frombuffer(load_wav_pcm16("opening_hours.wav"), dtype=np.int16)[::-1]
    reply = agent_reply_to(models, {"knowledge": KNOWLEDGE}, backwards.tobytes())
    assert reply == FALLBACK_REPLY


def test_the_api_carries_the_knowledge_list_to_the_agent() -> None:
    stored = AgentBody.model_validate({"name": "shop", "knowledge": KNOWLEDGE}).model_dump(
        exclude={"name", "is_default"}
    )
    agent = parse_agent_config(agent_config_for_call(stored))
    assert [e.answer for e in agent.knowledge] == [HOURS, "We are at 12 Harbour Street."]
    assert agent.knowledge[0].questions == ("When are you open?", "opening hours")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"q": ["x"], "answer": "y"}, r"knowledge\[0\] must be an object"),
        ({"questions": [], "answer": "y"}, r"knowledge\[0\]\.questions must be a list"),
        ({"questions": ["  "], "answer": "y"}, r"knowledge\[0\]\.questions\[0\] must be"),
        ({"questions": ["x"], "answer": ""}, r"knowledge\[0\]\.answer must be"),
        ({"questions": ["x"], "answer": "y" * 1001}, "longer than 1000"),
    ],
)
def test_a_bad_knowledge_list_is_refused_naming_the_entry(raw: Any, message: str) -> None:
    with pytest.raises(KnowledgeError, match=message):
        parse_knowledge([raw])
    with pytest.raises(AgentConfigError, match=message):
        parse_agent_config({"knowledge": [raw]})
