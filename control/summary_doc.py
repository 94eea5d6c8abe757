"""What a call summary is made of, from the call's stored rows alone (pure: no I/O, no clock).

The document gathers what the record holds: legs, agent, duration, who hung up and why, turns,
the transcript, every tool call with its result, the transfer and conference outcome, the
recording and turn-latency figures when there are any. Without a language model the written part
is composed from that same record and says so (method ``record``): the caller's first words (what
they came for), the tools used with their outcome, the agent's last answer. It never invents an
intent or a sentiment the record does not hold. Bounds keep one long call from producing an
unbounded document: transcript and tool entries are capped, and so are their texts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_TRANSCRIPT_ENTRIES = 500
MAX_TOOL_ENTRIES = 200
MAX_TEXT_CHARS = 2000
MAX_RESULT_CHARS = 2000
RECORD_METHOD = "record"
RECORD_NOTE = (
    "Written from the call record without a language model: the caller's first words, the"
    " tools the agent used and their outcome, and the agent's last answer."
)
_HUNG_UP_BY = {
    "caller": "the caller",
    "agent": "the agent",
    "api": "an API request",
    "error": "an error",
    "timeout": "a timeout",
    "shutdown": "a shutdown",
}


def capped_json(value: Any, max_chars: int = MAX_RESULT_CHARS) -> Any:
    """``value`` itself when its JSON is small, else its JSON text cut to ``max_chars``."""
    text = json.dumps(value, default=str)
    if len(text) <= max_chars:
        return value
    return {"truncated": text[:max_chars]}


@dataclass(frozen=True, slots=True)
class CallRecord:
    """The rows a summary is built from (see control/summaries.py for where they come from)."""

    call: dict[str, Any]
    agent: dict[str, Any] | None
    transcripts: Sequence[dict[str, Any]]
    events: Sequence[dict[str, Any]]  # this call's events, oldest first
    participants: Sequence[dict[str, Any]]  # this call's conference participations
    recording_url: str = ""
    latency: dict[str, Any] | None = None


TURN_LATENCY_MEANS = "the caller's last words (final transcript) to the first audio of the answer"


def turn_latency_figures(samples_ms: Sequence[int]) -> dict[str, Any] | None:
    """A call's answer latencies (the media core's, media/agent_peer.py) as a few figures."""
    if not samples_ms:
        return None
    ordered = sorted(samples_ms)

    def rank(q: float) -> int:  # nearest rank: a value that was measured, never interpolated
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {
        "measures": TURN_LATENCY_MEANS,
        "answers": len(ordered),
        "median_ms": rank(0.5),
        "p90_ms": rank(0.9),
        "max_ms": ordered[-1],
    }


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"


def _tools(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for e in events:
        if e["type"] == "tool_called":
            data = e["data"]
            out.append(
                {
                    "name": data.get("name", ""),
                    "arguments": capped_json(data.get("arguments", {})),
                    "is_error": bool(data.get("is_error")),
                    "result": capped_json(data.get("result")),
                    "tm_create": e["tm_create"],
                }
            )
    return out[:MAX_TOOL_ENTRIES]


def _transfer(events: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    last = None
    for e in events:
        if e["type"] in ("call_transferred", "call_transfer_failed"):
            last = {"status": "transferred" if e["type"] == "call_transferred" else "failed"}
            last.update({k: v for k, v in e["data"].items() if k in ("target", "reason", "status")})
            last["outcome"] = e["type"]
    return last


def _conferences(participants: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("conference_id", "status", "moderator", "tm_create", "tm_leave")
    return [{k: p.get(k) for k in keys} for p in participants]


def disposition(call: dict[str, Any], transfer: dict[str, Any] | None, conferenced: bool) -> str:
    """One word for how the call ended, from the record only."""
    if not call.get("tm_answer"):
        return "not_answered"
    if transfer is not None:
        return "transferred" if transfer["status"] == "transferred" else "transfer_failed"
    if conferenced:
        return "conference"
    cause = call.get("hangup_cause") or "unknown"
    return {"agent": "completed_by_agent", "caller": "caller_hung_up"}.get(cause, f"ended_{cause}")


def build_document(record: CallRecord) -> dict[str, Any]:
    call, agent = record.call, record.agent
    turns = [
        {"role": t["role"], "text": _cut(t["text"]), "tm_create": t["tm_create"]}
        for t in record.transcripts
    ]
    transfer = _transfer(record.events)
    conferences = _conferences(record.participants)
    return {
        "call_id": call["id"],
        "agent": {"id": call["agent_id"], "name": agent["name"] if agent else ""},
        "leg": call["leg"],
        "direction": call["direction"],
        "source": call["source"],
        "destination": call["destination"],
        "tm_create": call["tm_create"],
        "tm_answer": call["tm_answer"],
        "tm_hangup": call["tm_hangup"],
        "duration_ms": call["duration_ms"],
        "hangup": {
            "by": call["hangup_cause"],
            "reason": call["hangup_reason"],
        },
        "turns": {
            "caller": sum(t["role"] == "caller" for t in turns),
            "agent": sum(t["role"] == "agent" for t in turns),
        },
        "transcript": turns[:MAX_TRANSCRIPT_ENTRIES],
        "transcript_truncated": len(turns) > MAX_TRANSCRIPT_ENTRIES,
        "tools": _tools(record.events),
        "transfer": transfer,
        "conferences": conferences,
        "recording": {"url": record.recording_url} if record.recording_url else None,
        "latency": record.latency,
        "disposition": disposition(call, transfer, bool(conferences)),
    }


def _quote(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return f'"{text if len(text) <= limit else text[: limit - 1] + "…"}"'


def _tool_phrase(tool: dict[str, Any]) -> str:
    result = tool["result"]
    if tool["is_error"]:
        why = result.get("message") or result.get("error") if isinstance(result, dict) else result
        return f"{tool['name']} (failed: {why})"
    return f"{tool['name']} (ok)"


def record_text(doc: dict[str, Any]) -> str:
    """The written summary without a language model: plainly what the record holds."""
    said = [t for t in doc["transcript"] if t["role"] == "caller"]
    answers = [t for t in doc["transcript"] if t["role"] == "agent"]
    parts = [
        f"The caller spoke {doc['turns']['caller']} time(s), the agent {doc['turns']['agent']}."
    ]
    if said:
        parts.append(f"The caller first said {_quote(said[0]['text'])}.")
    if doc["tools"]:
        parts.append("Tools used: " + "; ".join(_tool_phrase(t) for t in doc["tools"]) + ".")
    else:
        parts.append("The agent used no tools.")
    if answers:
        parts.append(f"The agent's last answer: {_quote(answers[-1]['text'])}.")
    seconds = round(doc["duration_ms"] / 1000)
    by = _HUNG_UP_BY.get(doc["hangup"]["by"], doc["hangup"]["by"] or "unknown")
    reason = f" ({doc['hangup']['reason']})" if doc["hangup"]["reason"] else ""
    answered = "answered" if doc["tm_answer"] else "never answered"
    parts.append(f"The call was {answered}, lasted {seconds} s and was ended by {by}{reason}.")
    return " ".join(parts)
