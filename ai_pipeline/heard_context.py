"""After a barge-in, the LLM's context keeps what the caller heard of the reply, not what was
synthesised.

pipecat's assistant aggregator writes the reply into the context as the TTS confirms its text;
offline TTS runs well ahead of playout, so a reply cut off after three words is in the context
whole, and the LLM goes on as if the caller had heard the rest ("as I said, ..."). The agent's
output knows what was heard (:class:`~ai_pipeline.transport.LinkOutput`, by its playout clock);
:func:`keep_heard` cuts the reply's messages to that, and :class:`HeardContext`, after the
assistant aggregator, applies it at each interruption.

The reply is what the agent said after the caller's last message: its assistant messages with
text (tool calls and their results stay: they happened, heard or not). The heard words are a
prefix of the reply's words, so each message keeps the words the heard count still covers, and a
message left with none is dropped; heard words no message holds (an utterance cut off before the
TTS confirmed its text, which pipecat then leaves out) are added at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipecat.frames.frames import Frame, InterruptionFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


def _reply_start(messages: list[Any]) -> int:
    """Index of the first message after the caller's last one (0: no caller message yet)."""
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], dict) and messages[i].get("role") == "user":
            return i + 1
    return 0


def _spoken_text(message: Any) -> str | None:
    """The text of an assistant message that was spoken; None for anything else."""
    if not isinstance(message, dict) or message.get("role") != "assistant":
        return None
    if message.get("tool_calls"):
        return None
    content = message.get("content")
    return content if isinstance(content, str) else None


def keep_heard(messages: list[Any], heard: str) -> list[Any]:
    """``messages`` with the last reply's spoken text cut to its first ``heard`` words' worth;
    heard words the reply's messages do not hold (pipecat leaves out an utterance cut off before
    its text was confirmed) are added as an assistant message."""
    start = _reply_start(messages)
    heard_words = heard.split()
    budget = len(heard_words)
    kept = list(messages[:start])
    for message in messages[start:]:
        text = _spoken_text(message)
        if text is None:
            kept.append(message)
            continue
        said = text.split()
        if budget >= len(said):
            kept.append(message)
        elif budget > 0:
            kept.append({**message, "content": " ".join(said[:budget])})
        budget = max(0, budget - len(said))
    if budget:
        kept.append({"role": "assistant", "content": " ".join(heard_words[-budget:])})
    return kept


class HeardContext(FrameProcessor):
    """After the assistant aggregator: at an interruption that cut the reply short, the
    context's last reply is cut to what ``heard_reply()`` says the caller heard of it."""

    def __init__(
        self, context: LLMContext, heard_reply: Callable[[], str | None], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._context = context
        self._heard_reply = heard_reply

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        heard = self._heard_reply() if isinstance(frame, InterruptionFrame) else None
        if heard is not None:  # the interruption cut the reply short
            messages = self._context.get_messages()
            kept = keep_heard(messages, heard)
            if kept != messages:
                self._context.set_messages(kept)
        await self.push_frame(frame, direction)
