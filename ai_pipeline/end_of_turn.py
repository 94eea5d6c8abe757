"""Whether the caller has finished their turn, judged on what they said, not on a fixed wait.

A fixed wait after the VAD's stop (pipecat's ``user_speech_timeout``, 0.6 s) is most of a turn's
latency once Whisper's final is ready at the stop (``bench/RESULTS.md``, conversations). Waiting
nothing answers sooner but splits a caller's phrase at their pauses ("I'd like to talk to [pause]
sales"). The transcript tells the two apart, as a listener does:

- **complete**: a sentence or question that ends (Whisper punctuates the end of what it heard
  as ``.``, ``?`` or ``!``) on a word a sentence can end on: the turn is over, answer now;
- **incomplete**: it ends on a word that leads on (``and``, ``to``, ``the``, ``um``...), or trails
  off (``...``, ``-``): the caller is thinking, wait longer than usual;
- **unsure**: no sentence end at all: the usual wait.

And a few words said just after a complete turn ("[...] to sales. [pause] Please.") are its
courtesy tail (:func:`is_courtesy_tail`), not a new turn that should cut the answer off.

Pure text rules: no pipecat, no clock. :mod:`ai_pipeline.turns` acts on them.
"""

from __future__ import annotations

import re
from enum import Enum

INCOMPLETE_WAIT_FACTOR = 2.0
"""An incomplete ending waits this many times the agent's ``user_turn_timeout_secs``."""

_WORD = re.compile(r"[a-z']+")
_SENTENCE_END = ("?", "!", ".")
_TRAILING_OFF = ("...", "…", "-", "—", ",", ";", ":")


def _word_set(*groups: str) -> frozenset[str]:
    return frozenset(word for group in groups for word in group.split())


LEADING_ON = _word_set(
    # conjunctions and subordinators: a clause follows
    "and or but nor because if unless than whereas although until",
    # prepositions that are seldom a verb's particle: an object follows ("to", "for",
    # "about" and the like end questions: see QUESTION_MAY_END)
    "to of for with from into onto at about between towards toward during via per",
    # articles and possessives: a noun follows ("that", "this", "some" end sentences too)
    "a an the my your our their",
    # fillers and hesitations
    "um uh er erm hmm uhm ah eh",
)
"""Words a sentence does not end on: after them the caller has more to say."""

QUESTION_MAY_END = frozenset(["to", "for", "about", "with", "from", "of", "at", "into", "between"])
"""Prepositions a question may end on ("Who am I talking to?", "What is it about?")."""

COURTESY_WORDS = _word_set("please thanks thank you very much a lot okay ok cheers")
"""What a courtesy tail is made of ("Please.", "Thank you very much.", "Okay, thanks."); Whisper
hears a lone tail on a phone line as "Please please" too."""
COURTESY_CORE = _word_set("please thanks thank okay ok cheers")
MAX_TAIL_WORDS = 5


class Ending(Enum):
    COMPLETE = "complete"
    UNSURE = "unsure"
    INCOMPLETE = "incomplete"


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))  # a typographic apostrophe


def ending(text: str) -> Ending:
    """How the caller's words so far end (see the module docstring)."""
    stripped = text.strip()
    said = words(stripped)
    if not said:
        return Ending.UNSURE
    if stripped.endswith(_TRAILING_OFF):
        return Ending.INCOMPLETE
    last = said[-1]
    if stripped.endswith("?") and last in QUESTION_MAY_END:
        return Ending.COMPLETE
    if last in LEADING_ON:
        return Ending.INCOMPLETE
    if stripped.endswith(_SENTENCE_END):
        return Ending.COMPLETE
    return Ending.UNSURE


def wait_after_stop_secs(how: Ending, user_turn_timeout_secs: float) -> float:
    """How long after the VAD's stop (and the transcript) the turn waits for more speech."""
    if how is Ending.COMPLETE:
        return 0.0
    if how is Ending.INCOMPLETE:
        return user_turn_timeout_secs * INCOMPLETE_WAIT_FACTOR
    return user_turn_timeout_secs


def is_courtesy_tail(text: str) -> bool:
    """A few polite words that add nothing to the turn before them ("Please.", "Thank you.")."""
    said = words(text)
    return (
        0 < len(said) <= MAX_TAIL_WORDS
        and set(said) <= COURTESY_WORDS
        and not COURTESY_CORE.isdisjoint(said)
    )
