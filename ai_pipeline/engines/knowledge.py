"""The agent's knowledge list: questions (or topics) the customer wrote down, with their answers.

The offline agent's "LLM" is an intent router (``intent_router.py``), so it cannot answer
"when are you open on Saturday?" by itself. The customer gives the agent a knowledge list in its
config (``knowledge: [{"questions": [...], "answer": "..."}]``); :class:`KnowledgeIndex` embeds
every question with the same MiniLM the router uses and answers with the entry whose question is
nearest the caller's words, when it is near enough (:data:`MATCH_THRESHOLD`).

Pure: no pipecat, no asyncio. The index is built once per distinct list and process
(:class:`KnowledgeCache`), not per call: embedding is ~10-40 ms a question.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the agent config parses knowledge lists; the control plane needs no MiniLM
    from ai_pipeline.engines.minilm import FloatArray, MiniLMEncoder

MATCH_THRESHOLD = 0.5
"""Cosine similarity from which an entry answers. Measured on a seven-entry list (hours,
address, gift cards, password, refunds, weekend delivery): the caller's own phrasings of those
questions scored 0.53-0.87 against their entry, the fixtures' requests (sales, billing,
support, goodbye, text me) and unrelated questions ("who is the president", "do you have
parking") at most 0.35."""
MAX_ENTRIES = 200
MAX_QUESTIONS = 20
MAX_QUESTION_CHARS = 300
MAX_ANSWER_CHARS = 1000
CACHED_LISTS = 32
"""Distinct knowledge lists whose embeddings a process keeps (one per agent in use)."""


class KnowledgeError(ValueError):
    """The knowledge list in an agent config is malformed; the message names the entry."""


@dataclass(frozen=True, slots=True)
class KnowledgeEntry:
    """Ways a caller may ask, and what the agent answers."""

    questions: tuple[str, ...]
    answer: str


@dataclass(frozen=True, slots=True)
class KnowledgeMatch:
    entry: KnowledgeEntry
    score: float


def _text(value: Any, where: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise KnowledgeError(f"{where} must be a non-empty string")
    if len(value) > limit:
        raise KnowledgeError(f"{where} is longer than {limit} characters")
    return value.strip()


def parse_knowledge(raw: Any) -> tuple[KnowledgeEntry, ...]:
    """``[{"questions": ["..."], "answer": "..."}]`` -> entries, or :class:`KnowledgeError`."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise KnowledgeError("knowledge must be a list of {questions, answer} objects")
    if len(raw) > MAX_ENTRIES:
        raise KnowledgeError(f"knowledge has more than {MAX_ENTRIES} entries")
    entries = []
    for i, item in enumerate(raw):
        where = f"knowledge[{i}]"
        if not isinstance(item, Mapping) or set(item) != {"questions", "answer"}:
            raise KnowledgeError(f"{where} must be an object with questions and answer only")
        questions = item["questions"]
        if not isinstance(questions, list) or not 1 <= len(questions) <= MAX_QUESTIONS:
            raise KnowledgeError(f"{where}.questions must be a list of 1 to {MAX_QUESTIONS}")
        entries.append(
            KnowledgeEntry(
                questions=tuple(
                    _text(q, f"{where}.questions[{j}]", MAX_QUESTION_CHARS)
                    for j, q in enumerate(questions)
                ),
                answer=_text(item["answer"], f"{where}.answer", MAX_ANSWER_CHARS),
            )
        )
    return tuple(entries)


class KnowledgeIndex:
    """Nearest-question lookup over one knowledge list; read-only, shared by calls."""

    def __init__(
        self,
        encoder: MiniLMEncoder,
        entries: Sequence[KnowledgeEntry],
        threshold: float = MATCH_THRESHOLD,
    ) -> None:
        self._owners = [e for e in entries for _ in e.questions]
        self._threshold = threshold
        questions = [q for e in entries for q in e.questions]
        self._matrix: FloatArray = (
            encoder.embed_many(questions) if questions else np.zeros((0, 1), np.float32)
        )

    def match(self, vector: FloatArray) -> KnowledgeMatch | None:
        """The entry nearest the caller's embedded words, if it is near enough."""
        if not self._owners:
            return None
        scores = self._matrix @ vector
        best = int(np.argmax(scores))
        score = float(scores[best])
        return KnowledgeMatch(self._owners[best], score) if score >= self._threshold else None


class KnowledgeCache:
    """The process's indexes, one per distinct list, least recently used dropped first."""

    def __init__(self, encoder: MiniLMEncoder, capacity: int = CACHED_LISTS) -> None:
        self._encoder = encoder
        self._capacity = capacity
        self._lock = threading.Lock()
        self._indexes: OrderedDict[tuple[KnowledgeEntry, ...], KnowledgeIndex] = OrderedDict()

    def index(self, entries: tuple[KnowledgeEntry, ...]) -> KnowledgeIndex:
        """Blocking on a new list (embeds its questions): call it from a worker thread."""
        with self._lock:
            if entries in self._indexes:
                self._indexes.move_to_end(entries)
                return self._indexes[entries]
        built = KnowledgeIndex(self._encoder, entries)
        with self._lock:
            self._indexes[entries] = built
            while len(self._indexes) > self._capacity:
                self._indexes.popitem(last=False)
        return built
