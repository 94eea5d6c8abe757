"""Asterisk chan_websocket media protocol, sans-I/O (Asterisk 20.16+/21.11+/22.6+/23, ARI
externalMedia ``transport=websocket encapsulation=none`` or ``Dial(WebSocket/...)``).

BINARY frames carry raw media in the channel's format (160 bytes of ulaw or 640 of slin16 per
20 ms from Asterisk); TEXT frames carry control. Asterisk speaks one of two control formats,
chosen on its side (``chan_websocket.conf`` ``control_message_format``, or the dial option
``f(json)``): the plain-text line ``EVENT key:value key:value`` or a JSON object with an
``event`` key. Our commands must use the same format, so :class:`ChanWebsocketConnection`
learns it from MEDIA_START (the first message Asterisk sends) and answers in kind.

Asterisk's side of the contract, from chan_websocket.c: it ignores text messages over 128
bytes (so mark ids are bounded here); it drops media once its queue holds 1000 frames, sends
MEDIA_XOFF at 900 and MEDIA_XON below 800; FLUSH_MEDIA also discards queued MARK_MEDIA (so no
MEDIA_MARK_PROCESSED comes for those); it never sends a hangup message, it closes the socket.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from media.leg import LegError
from proto import safe_json

ControlFormat: TypeAlias = Literal["plain-text", "json"]

MAX_COMMAND_BYTES = 128
"""chan_websocket's MAX_TEXT_MESSAGE_LEN: longer commands are logged and ignored by Asterisk."""
MAX_MEDIA_BYTES = 65_500
"""res_http_websocket's largest message; Asterisk closes the socket and hangs up above it."""
MAX_TEXT_CHARS = 65_536
"""MEDIA_START in JSON carries every channel variable; anything longer is not Asterisk."""

FORMAT_RATES_HZ: dict[str, int] = {
    "ulaw": 8000,
    "alaw": 8000,
    "slin": 8000,
    "slin12": 12000,
    "slin16": 16000,
    "slin24": 24000,
    "slin32": 32000,
    "slin44": 44100,
    "slin48": 48000,
    "slin96": 96000,
    "slin192": 192000,
}
"""Formats we can decode: G.711 (1 byte a sample) and signed linear (2 bytes, little-endian)."""

SILENCE_BYTE = {"ulaw": b"\xff", "alaw": b"\xd5"}
"""One sample of silence in G.711; signed linear silence is zero bytes."""

_EVENT_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,39}")


class ChanWebsocketError(LegError):
    """Asterisk's side broke the protocol; ``reason`` is a metric label, e.g. ``bad_json``."""


@dataclass(frozen=True, slots=True)
class MediaStart:
    connection_id: str
    channel: str
    channel_id: str
    format: str
    optimal_frame_size: int
    ptime_ms: int
    channel_variables: dict[str, str] = field(default_factory=dict)

    @property
    def rate_hz(self) -> int:
        return FORMAT_RATES_HZ[self.format]

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.format.startswith("slin") else 1


@dataclass(frozen=True, slots=True)
class MediaFrame:
    """Audio in the channel's format (``MediaStart.format``), not yet converted."""

    audio: bytes


@dataclass(frozen=True, slots=True)
class DtmfEnd:
    digit: str


@dataclass(frozen=True, slots=True)
class MediaXoff:
    """Asterisk's queue is nearly full: stop sending media until MediaXon."""


@dataclass(frozen=True, slots=True)
class MediaXon:
    pass


@dataclass(frozen=True, slots=True)
class QueueDrained:
    pass


@dataclass(frozen=True, slots=True)
class MarkProcessed:
    correlation_id: str


@dataclass(frozen=True, slots=True)
class BufferingCompleted:
    correlation_id: str


@dataclass(frozen=True, slots=True)
class Status:
    queue_length: int
    xon_level: int
    xoff_level: int
    queue_full: bool
    bulk_media: bool
    media_paused: bool


@dataclass(frozen=True, slots=True)
class AsteriskError:
    """Asterisk rejected one of our commands (an ``ERROR`` notification); the call goes on."""

    error_text: str


@dataclass(frozen=True, slots=True)
class UnknownNotice:
    """A well-formed notification this module does not know (a newer Asterisk): skip it."""

    event: str


ChanWebsocketEvent: TypeAlias = (
    MediaStart
    | MediaFrame
    | DtmfEnd
    | MediaXoff
    | MediaXon
    | QueueDrained
    | MarkProcessed
    | BufferingCompleted
    | Status
    | AsteriskError
    | UnknownNotice
)

_NO_DATA: dict[str, ChanWebsocketEvent] = {
    "MEDIA_XOFF": MediaXoff(),
    "MEDIA_XON": MediaXon(),
    "QUEUE_DRAINED": QueueDrained(),
}


def _parse_plain(text: str) -> tuple[str, dict[str, str], str]:
    """``EVENT k:v k:v`` -> (event, fields, rest of line after the event)."""
    event, _, rest = text.partition(" ")
    fields: dict[str, str] = {}
    for token in rest.split():
        key, sep, value = token.partition(":")
        if sep:
            fields.setdefault(key, value)
    if "error_text:" in rest:  # free text with spaces, always last
        fields["error_text"] = rest.partition("error_text:")[2]
    return event, fields, rest.strip()


def _parse_json(text: str) -> tuple[str, dict[str, Any]]:
    try:
        msg = safe_json.loads(text, max_chars=MAX_TEXT_CHARS)
    except safe_json.JsonInputError as exc:
        raise ChanWebsocketError("bad_json", str(exc)[:80]) from None
    if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
        raise ChanWebsocketError("bad_json", "not an object with an event")
    return msg["event"], msg


def _field_str(fields: dict[str, Any], key: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str) or not value:
        raise ChanWebsocketError("missing_field", key)
    return value


def _field_int(fields: dict[str, Any], key: str, low: int, high: int) -> int:
    value = fields.get(key)
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ChanWebsocketError("bad_field", f"{key}={str(value)[:20]}")
    return value


def _field_bool(fields: dict[str, Any], key: str) -> bool:
    value = fields.get(key)
    if value is True or value == "true":
        return True
    if value is False or value == "false":
        return False
    raise ChanWebsocketError("bad_field", key)


@dataclass
class ChanWebsocketConnection:
    """Our side of one chan_websocket connection.

    ``receive_text`` / ``receive_binary`` turn Asterisk's frames into events; the command
    methods return the TEXT message to send. ``xoff`` mirrors Asterisk's flow control state.
    """

    control_format: ControlFormat | None = None  # learnt from MEDIA_START unless given
    started: MediaStart | None = None
    xoff: bool = False

    def receive_binary(self, data: bytes) -> MediaFrame:
        if self.started is None:
            raise ChanWebsocketError("before_start", "media before MEDIA_START")
        if not data or len(data) > MAX_MEDIA_BYTES:
            raise ChanWebsocketError("bad_payload_size", f"{len(data)} bytes")
        if len(data) % self.started.bytes_per_sample:
            raise ChanWebsocketError("bad_payload_size", f"odd {len(data)} bytes of slin")
        return MediaFrame(data)

    def receive_text(self, text: str) -> ChanWebsocketEvent:
        if len(text) > MAX_TEXT_CHARS:
            raise ChanWebsocketError("oversized", f"{len(text)} chars")
        text = text.strip()
        fmt = self.control_format
        if fmt is None:
            fmt = "json" if text.startswith("{") else "plain-text"
        if fmt == "json":
            event, fields = _parse_json(text)
            rest = ""
        else:
            event, fields, rest = _parse_plain(text)
        if not _EVENT_NAME.fullmatch(event):
            raise ChanWebsocketError("bad_message", text[:40])
        if self.started is None:
            if event != "MEDIA_START":
                raise ChanWebsocketError("before_start", event)
            self.control_format = fmt
            self.started = self._media_start(fields)
            return self.started
        return self._notification(event, fields, rest)

    def _media_start(self, fields: dict[str, Any]) -> MediaStart:
        fmt = _field_str(fields, "format")
        if fmt not in FORMAT_RATES_HZ:
            raise ChanWebsocketError("unsupported_format", fmt[:20])
        variables = fields.get("channel_variables", {})
        if not isinstance(variables, dict):
            raise ChanWebsocketError("bad_field", "channel_variables")
        return MediaStart(
            connection_id=_field_str(fields, "connection_id"),
            channel=_field_str(fields, "channel"),
            channel_id=_field_str(fields, "channel_id"),
            format=fmt,
            optimal_frame_size=_field_int(fields, "optimal_frame_size", 1, MAX_MEDIA_BYTES),
            # Asterisk before the ptime field (first 20.16/22.6 builds) implied 20 ms.
            ptime_ms=_field_int(fields, "ptime", 1, 1000) if "ptime" in fields else 20,
            channel_variables={str(k): str(v) for k, v in variables.items()},
        )

    def _notification(self, event: str, fields: dict[str, Any], rest: str) -> ChanWebsocketEvent:
        if event in _NO_DATA:
            if event != "QUEUE_DRAINED":
                self.xoff = event == "MEDIA_XOFF"
            return _NO_DATA[event]
        if event == "MEDIA_START":
            raise ChanWebsocketError("duplicate_start")
        if event == "DTMF_END":
            digit = _field_str(fields, "digit")
            if len(digit) != 1 or digit not in "0123456789*#ABCD":
                raise ChanWebsocketError("bad_field", "digit")
            return DtmfEnd(digit)
        if event in ("MEDIA_MARK_PROCESSED", "MEDIA_BUFFERING_COMPLETED"):
            if self.control_format == "json":
                value = fields.get("correlation_id", "")
                if not isinstance(value, str):
                    raise ChanWebsocketError("bad_field", "correlation_id")
            else:
                value = rest
            return (MarkProcessed if event == "MEDIA_MARK_PROCESSED" else BufferingCompleted)(value)
        if event == "STATUS":
            return Status(
                queue_length=_field_int(fields, "queue_length", 0, 10**6),
                xon_level=_field_int(fields, "xon_level", 0, 10**6),
                xoff_level=_field_int(fields, "xoff_level", 0, 10**6),
                queue_full=_field_bool(fields, "queue_full"),
                bulk_media=_field_bool(fields, "bulk_media"),
                media_paused=_field_bool(fields, "media_paused"),
            )
        if event == "ERROR":
            text = fields.get("error_text", "")
            return AsteriskError(text if isinstance(text, str) else json.dumps(text))
        return UnknownNotice(event)

    def media(self, audio: bytes) -> list[bytes]:
        """BINARY messages for ``audio`` in the channel's format. Outside bulk mode Asterisk
        drops whatever does not fill a whole ``optimal_frame_size``, and closes the call on a
        message over 65,500 bytes: so pad the tail with the format's silence, and split."""
        if self.started is None:
            raise RuntimeError("no MEDIA_START yet: the frame size is unknown")
        frame_bytes = self.started.optimal_frame_size
        short = -len(audio) % frame_bytes
        if short:
            audio += SILENCE_BYTE.get(self.started.format, b"\x00") * short
        step = MAX_MEDIA_BYTES // frame_bytes * frame_bytes
        return [audio[i : i + step] for i in range(0, len(audio), step)]

    # --- commands: each returns the TEXT message to send --------------------------------------

    def _command(self, command: str, correlation_id: str | None = None) -> str:
        if self.started is None:
            raise RuntimeError("no MEDIA_START yet: the control format is unknown")
        if correlation_id is not None and (
            not correlation_id
            or correlation_id != correlation_id.strip()
            or any(c in correlation_id for c in "\r\n")
        ):
            raise ValueError(f"correlation id {correlation_id!r}: non-empty, no edge spaces")
        if self.control_format == "json":
            msg: dict[str, str] = {"command": command}
            if correlation_id is not None:
                msg["correlation_id"] = correlation_id
            text = json.dumps(msg, separators=(",", ":"))
        else:
            text = command if correlation_id is None else f"{command} {correlation_id}"
        if len(text.encode()) > MAX_COMMAND_BYTES:
            raise ValueError(f"{command}: over {MAX_COMMAND_BYTES} bytes, Asterisk would ignore it")
        return text

    def answer(self) -> str:
        return self._command("ANSWER")

    def hangup(self) -> str:
        return self._command("HANGUP")

    def flush_media(self) -> str:
        return self._command("FLUSH_MEDIA")

    def mark_media(self, correlation_id: str) -> str:
        return self._command("MARK_MEDIA", correlation_id)

    def report_queue_drained(self) -> str:
        return self._command("REPORT_QUEUE_DRAINED")

    def get_status(self) -> str:
        return self._command("GET_STATUS")

    def pause_media(self) -> str:
        return self._command("PAUSE_MEDIA")

    def continue_media(self) -> str:
        return self._command("CONTINUE_MEDIA")

    def start_media_buffering(self) -> str:
        return self._command("START_MEDIA_BUFFERING")

    def stop_media_buffering(self, correlation_id: str | None = None) -> str:
        return self._command("STOP_MEDIA_BUFFERING", correlation_id)


def media_start_text(start: MediaStart, control_format: ControlFormat = "plain-text") -> str:
    """MEDIA_START as Asterisk writes it (for test peers and benchmarks)."""
    if control_format == "json":
        return json.dumps(
            {
                "event": "MEDIA_START",
                "connection_id": start.connection_id,
                "channel": start.channel,
                "channel_id": start.channel_id,
                "format": start.format,
                "optimal_frame_size": start.optimal_frame_size,
                "ptime": start.ptime_ms,
                "channel_variables": start.channel_variables,
            },
            separators=(",", ":"),
        )
    return (
        f"MEDIA_START connection_id:{start.connection_id} channel:{start.channel} "
        f"channel_id:{start.channel_id} format:{start.format} "
        f"optimal_frame_size:{start.optimal_frame_size} ptime:{start.ptime_ms}"
    )
