"""Encode and decode agent-link frames (``proto/frames.proto``) to and from :mod:`proto.messages`.

Pure functions, no I/O. Decoding validates what protobuf cannot: JSON fields must parse to the
right shape, DTMF digits must be real keys, audio must be whole 16-bit samples. Anything else is
a :class:`LinkDecodeError` carrying the reason, so the caller can close the link with it.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.message import DecodeError

from proto import frames_pb2 as pb
from proto import safe_json
from proto.audio_wire import decode_audio, encode_audio
from proto.messages import (
    DTMF_DIGITS,
    Audio,
    CallStart,
    Dtmf,
    Error,
    FunctionCall,
    FunctionCallResult,
    Hangup,
    Interruption,
    LinkFrame,
    Mark,
    Message,
    Text,
    Transcript,
    Transcription,
)

MAX_LINK_FRAME_BYTES = 1 << 20
"""Largest encoded frame accepted: 1 MiB is 32 s of 16 kHz audio, far above any real frame."""


class LinkDecodeError(ValueError):
    """A link frame that cannot be turned into a :data:`LinkFrame`."""


def encode(frame: LinkFrame) -> bytes:
    """Serialise one frame to its wire bytes."""
    if type(frame) is Audio:  # the hot path: the same bytes, without a message object
        return encode_audio(frame.pcm16, frame.sample_rate_hz, frame.num_channels)
    wire = pb.Frame()
    _ENCODERS[type(frame)](frame, wire)
    return wire.SerializeToString()


def decode(data: bytes) -> LinkFrame | None:
    """Parse one wire frame; ``None`` for a frame whose kind this version does not know."""
    if len(data) > MAX_LINK_FRAME_BYTES:
        raise LinkDecodeError(f"frame of {len(data)} bytes exceeds {MAX_LINK_FRAME_BYTES}")
    plain_audio = decode_audio(data)
    if plain_audio is not None:
        pcm16, rate_hz, channels = plain_audio
        return _checked_audio(pcm16, rate_hz, channels)
    try:
        wire = pb.Frame.FromString(data)
    except DecodeError as exc:
        raise LinkDecodeError(f"not a Frame: {exc}") from exc
    which = wire.WhichOneof("frame")
    if which is None:
        return None
    frame: LinkFrame = _DECODERS[which](getattr(wire, which))
    return frame


# ---- encoders -------------------------------------------------------------------------------


def _enc_audio(f: Any, w: pb.Frame) -> None:
    w.audio.audio = f.pcm16
    w.audio.sample_rate = f.sample_rate_hz
    w.audio.num_channels = f.num_channels


def _enc_text(f: Any, w: pb.Frame) -> None:
    w.text.text = f.text


def _enc_transcription(f: Any, w: pb.Frame) -> None:
    w.transcription.text = f.text
    w.transcription.user_id = f.user_id
    w.transcription.timestamp = f.timestamp


def _enc_message(f: Any, w: pb.Frame) -> None:
    w.message.data = json.dumps(f.data)


def _enc_interruption(f: Any, w: pb.Frame) -> None:
    w.interruption.SetInParent()


def _enc_call_start(f: Any, w: pb.Frame) -> None:
    c = w.call_start
    c.call_id = f.call_id
    c.agent_id = f.agent_id
    c.agent_config = json.dumps(f.agent_config)
    c.sample_rate = f.sample_rate_hz
    c.num_channels = f.num_channels
    c.leg = f.leg
    c.caller = f.caller
    c.callee = f.callee
    c.customer_id = f.customer_id


def _enc_dtmf(f: Any, w: pb.Frame) -> None:
    w.dtmf.digit = f.digit
    w.dtmf.duration_ms = f.duration_ms


def _enc_function_call(f: Any, w: pb.Frame) -> None:
    w.function_call.tool_call_id = f.tool_call_id
    w.function_call.function_name = f.name
    w.function_call.arguments = json.dumps(f.arguments)


def _enc_function_call_result(f: Any, w: pb.Frame) -> None:
    r = w.function_call_result
    r.tool_call_id = f.tool_call_id
    r.function_name = f.name
    r.result = json.dumps(f.result)
    r.is_error = f.is_error


def _enc_hangup(f: Any, w: pb.Frame) -> None:
    w.hangup.reason = f.reason


def _enc_mark(f: Any, w: pb.Frame) -> None:
    w.mark.name = f.name


def _enc_transcript(f: Any, w: pb.Frame) -> None:
    w.transcript.role = f.role
    w.transcript.text = f.text
    w.transcript.final = f.final


def _enc_error(f: Any, w: pb.Frame) -> None:
    w.error.code = f.code
    w.error.message = f.message
    w.error.fatal = f.fatal


_ENCODERS = {
    Audio: _enc_audio,
    Text: _enc_text,
    Transcription: _enc_transcription,
    Message: _enc_message,
    Interruption: _enc_interruption,
    CallStart: _enc_call_start,
    Dtmf: _enc_dtmf,
    FunctionCall: _enc_function_call,
    FunctionCallResult: _enc_function_call_result,
    Hangup: _enc_hangup,
    Mark: _enc_mark,
    Transcript: _enc_transcript,
    Error: _enc_error,
}


# ---- decoders -------------------------------------------------------------------------------


def _json(text: str, what: str) -> Any:
    try:
        return safe_json.loads(text, max_chars=MAX_LINK_FRAME_BYTES) if text else None
    except safe_json.JsonInputError as exc:
        raise LinkDecodeError(f"{what} is not JSON we accept ({exc.reason}): {exc}") from exc


def _json_object(text: str, what: str) -> dict[str, Any]:
    value = _json(text, what)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LinkDecodeError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _dec_audio(m: Any) -> Audio:
    return _checked_audio(m.audio, m.sample_rate, m.num_channels)


def _checked_audio(pcm16: bytes, rate_hz: int, channels: int) -> Audio:
    if len(pcm16) % 2:
        raise LinkDecodeError(f"audio of {len(pcm16)} bytes is not whole 16-bit samples")
    if not 0 < rate_hz <= 192_000:
        raise LinkDecodeError(f"audio sample_rate {rate_hz} out of range")
    return Audio(pcm16=pcm16, sample_rate_hz=rate_hz, num_channels=channels or 1)


def _dec_call_start(m: Any) -> CallStart:
    if not m.call_id:
        raise LinkDecodeError("call_start without call_id")
    return CallStart(
        call_id=m.call_id,
        agent_id=m.agent_id,
        agent_config=_json_object(m.agent_config, "call_start.agent_config"),
        sample_rate_hz=m.sample_rate or 16000,
        num_channels=m.num_channels or 1,
        leg=m.leg,
        caller=m.caller,
        callee=m.callee,
        customer_id=m.customer_id,
    )


def _dec_dtmf(m: Any) -> Dtmf:
    if len(m.digit) != 1 or m.digit not in DTMF_DIGITS:
        raise LinkDecodeError(f"dtmf digit {m.digit!r} is not one of 0-9 * # A-D")
    return Dtmf(digit=m.digit, duration_ms=m.duration_ms)


def _dec_function_call(m: Any) -> FunctionCall:
    if not m.function_name:
        raise LinkDecodeError("function_call without function_name")
    args = _json_object(m.arguments, "function_call.arguments")
    return FunctionCall(tool_call_id=m.tool_call_id, name=m.function_name, arguments=args)


def _dec_function_call_result(m: Any) -> FunctionCallResult:
    return FunctionCallResult(
        tool_call_id=m.tool_call_id,
        name=m.function_name,
        result=_json(m.result, "function_call_result.result"),
        is_error=m.is_error,
    )


def _dec_transcript(m: Any) -> Transcript:
    if m.role not in ("caller", "agent"):
        raise LinkDecodeError(f"transcript role {m.role!r} is not caller or agent")
    return Transcript(role=m.role, text=m.text, final=m.final)


_DECODERS: dict[str, Any] = {
    "audio": _dec_audio,
    "text": lambda m: Text(text=m.text),
    "transcription": lambda m: Transcription(m.text, m.user_id, m.timestamp),
    "message": lambda m: Message(data=_json(m.data, "message.data")),
    "interruption": lambda m: Interruption(),
    "call_start": _dec_call_start,
    "dtmf": _dec_dtmf,
    "function_call": _dec_function_call,
    "function_call_result": _dec_function_call_result,
    "hangup": lambda m: Hangup(reason=m.reason),
    "mark": lambda m: Mark(name=m.name),
    "transcript": _dec_transcript,
    "error": lambda m: Error(code=m.code, message=m.message, fatal=m.fatal),
}
