"""Typed frames of the agent link, as the rest of callbridge sees them.

Plain frozen dataclasses: no protobuf objects cross this boundary (house style 6). JSON-carrying
fields are already parsed here; :mod:`proto.codec` does the (de)serialisation and validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

JsonObject: TypeAlias = dict[str, Any]

DTMF_DIGITS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True, slots=True)
class Audio:
    """PCM16 little-endian audio; on the link, 16 kHz mono in 20 ms frames."""

    pcm16: bytes
    sample_rate_hz: int
    num_channels: int = 1


@dataclass(frozen=True, slots=True)
class Text:
    """pipecat's TextFrame: text for the agent (core -> agent) or text the agent produced."""

    text: str


@dataclass(frozen=True, slots=True)
class Transcription:
    """pipecat's TranscriptionFrame: what a stock pipecat bot heard the user say."""

    text: str
    user_id: str = ""
    timestamp: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """pipecat's MessageFrame: an application message (a JSON value)."""

    data: Any


@dataclass(frozen=True, slots=True)
class Interruption:
    """The caller barged in: drop all agent audio queued for playout, now."""


@dataclass(frozen=True, slots=True)
class CallStart:
    """First frame of every call, core -> agent."""

    call_id: str
    agent_id: str = ""
    agent_config: JsonObject = field(default_factory=dict)
    sample_rate_hz: int = 16000
    num_channels: int = 1
    leg: str = ""
    caller: str = ""
    callee: str = ""
    customer_id: str = ""


@dataclass(frozen=True, slots=True)
class Dtmf:
    """A key press: caller -> agent, or agent -> caller (send_dtmf)."""

    digit: str
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """The agent's LLM called a tool that the call executes."""

    tool_call_id: str
    name: str
    arguments: JsonObject


@dataclass(frozen=True, slots=True)
class FunctionCallResult:
    """The outcome of a :class:`FunctionCall`, core -> agent."""

    tool_call_id: str
    name: str
    result: Any
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class Hangup:
    """The call is over; from the agent: end it once the audio queued before this has played."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class Mark:
    """Agent -> core: tell me when the audio before this has played. Core -> agent: it has."""

    name: str


@dataclass(frozen=True, slots=True)
class Transcript:
    """What the caller said (role ``caller``) or the agent said (role ``agent``)."""

    role: Literal["caller", "agent"]
    text: str
    final: bool = True


@dataclass(frozen=True, slots=True)
class Error:
    """Something went wrong on the sender's side; a fatal error ends the call."""

    code: str
    message: str
    fatal: bool = False


LinkFrame: TypeAlias = (
    Audio
    | Text
    | Transcription
    | Message
    | Interruption
    | CallStart
    | Dtmf
    | FunctionCall
    | FunctionCallResult
    | Hangup
    | Mark
    | Transcript
    | Error
)
