"""A written call summary and disposition from an OpenAI-compatible chat completions endpoint.

The endpoint is the agent's own LLM (``engines.llm == "openai"`` with ``options.llm`` ``base_url``,
``model``, ``api_key_env``, as ai_pipeline/engines/factory.py reads them): a deployment with a
language model for its calls summarises them with it, one without never sends its calls anywhere.
The request is ``POST {base_url}/chat/completions`` (OpenAI's API reference, "Create chat
completion"); the answer's first choice's ``message.content`` must hold a JSON object
``{"summary": ..., "disposition": ...}``. Anything else is :class:`SummaryLlmError`, and the caller
keeps the summary written from the record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from control.httpclient import HttpClientError, post

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4.1-mini"
MAX_SUMMARY_CHARS = 2000
_DISPOSITION = re.compile(r"[^a-z0-9_]+")
SYSTEM_PROMPT = (
    "You summarise phone calls between a caller and an AI voice agent for the operator's call"
    " history. You get the call's record as JSON. Answer with one JSON object only:"
    ' {"summary": "<two or three plain sentences: why the caller called, what the agent did,'
    ' how it ended>", "disposition": "<one snake_case word or two, e.g. resolved, transferred,'
    ' callback_requested, abandoned, unresolved>"}. Use only what the record says.'
)


class SummaryLlmError(Exception):
    """The LLM could not be asked or did not answer with a usable summary."""


@dataclass(frozen=True, slots=True)
class LlmEndpoint:
    base_url: str
    model: str
    api_key: str


def endpoint_for(agent_detail: Mapping[str, Any], env: Mapping[str, str]) -> LlmEndpoint | None:
    """The agent's OpenAI-compatible LLM, or None when it has none (offline intent router)."""
    engines = agent_detail.get("engines") or {}
    if engines.get("llm") != "openai":
        return None
    options = (engines.get("options") or {}).get("llm") or {}
    base_url = str(options.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    key = env.get(str(options.get("api_key_env") or "OPENAI_API_KEY"), "")
    return LlmEndpoint(base_url, str(options.get("model") or DEFAULT_MODEL), key)


def request_body(model: str, document: dict[str, Any]) -> bytes:
    record = {k: v for k, v in document.items() if k not in ("call_id", "recording")}
    return json.dumps(
        {
            "model": model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": json.dumps(record, default=str)},
            ],
        }
    ).encode()


def parse_answer(body: bytes) -> tuple[str, str]:
    """(summary, disposition) from a chat completion's body, or :class:`SummaryLlmError`."""
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
        start, end = content.index("{"), content.rindex("}") + 1
        answer = json.loads(content[start:end])
        summary, disposition = answer["summary"], answer["disposition"]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise SummaryLlmError(f"not a chat completion with a JSON summary: {exc!r}") from None
    if not isinstance(summary, str) or not isinstance(disposition, str) or not summary.strip():
        raise SummaryLlmError("summary and disposition must be non-empty text")
    word = _DISPOSITION.sub("_", disposition.strip().lower()).strip("_")[:64] or "unknown"
    return summary.strip()[:MAX_SUMMARY_CHARS], word


async def summarise(
    endpoint: LlmEndpoint, document: dict[str, Any], timeout_s: float
) -> tuple[str, str]:
    headers = {"Content-Type": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    url = f"{endpoint.base_url}/chat/completions"
    try:
        response = await post(url, request_body(endpoint.model, document), headers, timeout_s)
    except HttpClientError as exc:
        raise SummaryLlmError(str(exc)) from None
    if response.status_code != 200:
        raise SummaryLlmError(f"{url} answered {response.status_code}")
    return parse_answer(response.body)
