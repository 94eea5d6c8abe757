"""The end of a caller's turn judged on their words (:mod:`ai_pipeline.end_of_turn`)."""

from __future__ import annotations

import pytest

from ai_pipeline.end_of_turn import (
    Ending,
    ending,
    is_courtesy_tail,
    wait_after_stop_secs,
)


@pytest.mark.parametrize(
    "text",
    [
        "What time are you open tomorrow?",
        "I have a question about my bill.",
        "Transfer me to sales, please.",
        "No.",
        "Yes!",
        "Who am I talking to?",  # a question may end on a preposition
        "What is it about?",
        "I want that.",
        "  Can you text me the details?  ",
    ],
)
def test_a_sentence_or_question_that_ends_is_complete(text: str) -> None:
    assert ending(text) is Ending.COMPLETE


@pytest.mark.parametrize(
    "text",
    [
        "I'd like to talk to",
        "I'd like to talk to.",  # Whisper puts a full stop after what it heard, even a stub
        "I have a question about my.",
        "My internet is not working and",
        "Can you put me through to the.",
        "I was calling about, um.",
        "I was calling about...",
        "Transfer me to sales,",
        "So I -",
    ],
)
def test_an_ending_that_leads_on_is_incomplete(text: str) -> None:
    assert ending(text) is Ending.INCOMPLETE


@pytest.mark.parametrize("text", ["", "   ", "transfer me to sales", "The caller pressed 1"])
def test_no_sentence_end_is_unsure(text: str) -> None:
    assert ending(text) is Ending.UNSURE


def test_the_wait_follows_the_ending() -> None:
    assert wait_after_stop_secs(Ending.COMPLETE, 0.6) == 0.0
    assert wait_after_stop_secs(Ending.UNSURE, 0.6) == 0.6
    assert wait_after_stop_secs(Ending.INCOMPLETE, 0.6) > 0.6
    assert wait_after_stop_secs(Ending.INCOMPLETE, 0.0) == 0.0  # the agent asked for no wait


@pytest.mark.parametrize(
    "text",
    [
        "Please.",
        "please",
        "Thank you.",
        "Thanks!",
        "Okay, thanks.",
        "Please please",
        "Thanks a lot.",
    ],
)
def test_courtesy_tails(text: str) -> None:
    assert is_courtesy_tail(text)


@pytest.mark.parametrize(
    "text", ["No.", "Please transfer me.", "Thank you, but billing.", "", "You.", "A lot."]
)
def test_words_that_say_something_are_not_a_tail(text: str) -> None:
    assert not is_courtesy_tail(text)
