"""Twilio Media Streams over WebSocket, sans-I/O (Twilio: "Media Streams - WebSocket Messages").

Twilio (or any client speaking its protocol: a browser page, pipecat's ``TwilioFrameSerializer``
on the other role) sends JSON text messages ``connected``, ``start``, ``media`` (base64 mu-law
8 kHz), ``dtmf``, ``mark`` (echo of one of ours, once the audio before it has played) and
``stop``; the application answers with ``media``, ``mark`` and ``clear``. Twilio writes numbers
as decimal strings (``"sequenceNumber": "3"``); we accept strings and plain integers.

:class:`TwilioStream` is the application's side, the role callbridge plays: text in -> typed
event out, our messages out as text. :class:`TwilioPeer` is Twilio's side, for test clients and
the capacity benchmark. No sockets, no clocks; every malformed input raises
:class:`TwilioProtocolError` and nothing else, with a short reason label for metrics.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from media.audio import FRAME_MS, TELEPHONY_RATE_HZ
from media.leg import LegError
from proto import safe_json

ULAW_ENCODING = "audio/x-mulaw"
MAX_MESSAGE_CHARS = 65_536
"""Bound on one text message: 200 ms of media is ~2.3 kB, a start with parameters a few kB."""
MAX_PENDING_MARKS = 256
DEFAULT_MAX_MEDIA_MS = 200
"""Twilio sends 20 ms chunks; 200 ms leaves room for other clients without unbounded frames."""
_DECIMAL = re.compile(r"[0-9]{1,15}")


class TwilioProtocolError(LegError):
    """The peer broke the Media Streams protocol; ``reason`` is a metric label (``bad_json``)."""


@dataclass(frozen=True, slots=True)
class MediaFormat:
    encoding: str
    rate_hz: int
    channels: int


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str]
    media_format: MediaFormat
    sequence: int


@dataclass(frozen=True, slots=True)
class Media:
    ulaw: bytes
    sequence: int
    chunk: int
    timestamp_ms: int
    track: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str
    track: str
    sequence: int


@dataclass(frozen=True, slots=True)
class Mark:
    name: str
    sequence: int


@dataclass(frozen=True, slots=True)
class Stop:
    sequence: int


TwilioEvent: TypeAlias = Connected | Start | Media | Dtmf | Mark | Stop


@dataclass(frozen=True, slots=True)
class OutboundMedia:
    """``media`` from the application: audio for Twilio to play."""

    ulaw: bytes


@dataclass(frozen=True, slots=True)
class OutboundMark:
    name: str


@dataclass(frozen=True, slots=True)
class Clear:
    pass


AppMessage: TypeAlias = OutboundMedia | OutboundMark | Clear


# --- field readers: each raises TwilioProtocolError naming the field ---------------------------


def _load(text: str | bytes) -> tuple[str, dict[str, Any]]:
    if len(text) > MAX_MESSAGE_CHARS:
        raise TwilioProtocolError("oversized", f"{len(text)} > {MAX_MESSAGE_CHARS}")
    if isinstance(text, bytes):
        # Media Streams is text only; a binary frame is a client bug, not mu-law.
        raise TwilioProtocolError("binary_message", f"{len(text)} bytes")
    try:
        msg = safe_json.loads(text, max_chars=MAX_MESSAGE_CHARS)
    except safe_json.JsonInputError as exc:
        raise TwilioProtocolError("bad_json", str(exc)[:80]) from None
    if not isinstance(msg, dict):
        raise TwilioProtocolError("bad_json", "not an object")
    event = msg.get("event")
    if not isinstance(event, str):
        raise TwilioProtocolError("missing_field", "event")
    return event, msg


def _obj(msg: dict[str, Any], key: str) -> dict[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise TwilioProtocolError("missing_field", key)
    return value


def _str(msg: dict[str, Any], key: str, *, default: str | None = None) -> str:
    value = msg.get(key, default)
    if not isinstance(value, str):
        raise TwilioProtocolError("missing_field" if value is None else "bad_field", key)
    return value


def _int(msg: dict[str, Any], key: str, *, default: int | None = None) -> int:
    value = msg.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**15:
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return int(value)
    raise TwilioProtocolError("missing_field" if value is None else "bad_field", key)


def _b64(text: str, max_bytes: int) -> bytes:
    if len(text) > (max_bytes + 2) // 3 * 4:
        raise TwilioProtocolError("bad_payload_size", f"payload over {max_bytes} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TwilioProtocolError("bad_base64", text[:40]) from None
    if not 0 < len(data) <= max_bytes:
        raise TwilioProtocolError("bad_payload_size", f"{len(data)} bytes, 1..{max_bytes} allowed")
    return data


def _str_map(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TwilioProtocolError("bad_field", key)
    return dict(value)


# --- the application's side -------------------------------------------------------------------


@dataclass
class TwilioStream:
    """Our side of one stream: ``receive(text)`` -> event, ``media()/mark()/clear()`` -> text.

    Order is enforced: ``connected`` (optional, first), one ``start``, then media/dtmf/mark,
    then ``stop``. ``sequence_gaps`` counts messages Twilio numbered but we never saw.
    """

    max_media_ms: int = DEFAULT_MAX_MEDIA_MS
    start: Start | None = None
    stopped: bool = False
    sequence_gaps: int = 0
    # Marks sent and not yet echoed; bounded, since a client may never echo them.
    pending_marks: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_PENDING_MARKS))
    _last_sequence: int | None = None

    @property
    def max_media_bytes(self) -> int:
        return TELEPHONY_RATE_HZ * self.max_media_ms // 1000

    def receive(self, text: str | bytes) -> TwilioEvent:
        event, msg = _load(text)
        if self.stopped:
            raise TwilioProtocolError("after_stop", event)
        if event == "connected":
            if self.start is not None or self._last_sequence is not None:
                raise TwilioProtocolError("out_of_order", "connected after start")
            return Connected(_str(msg, "protocol", default="Call"), _str(msg, "version"))
        if event not in ("start", "media", "dtmf", "mark", "stop"):
            raise TwilioProtocolError("unknown_event", event[:40])
        sequence = _int(msg, "sequenceNumber")
        if event == "start":
            return self._on_start(msg, sequence)
        if self.start is None:
            raise TwilioProtocolError("before_start", event)
        if _str(msg, "streamSid") != self.start.stream_sid:
            raise TwilioProtocolError("stream_mismatch", event)
        self._count_sequence(sequence)
        if event == "media":
            media = _obj(msg, "media")
            return Media(
                ulaw=_b64(_str(media, "payload"), self.max_media_bytes),
                sequence=sequence,
                chunk=_int(media, "chunk"),
                timestamp_ms=_int(media, "timestamp"),
                track=_str(media, "track", default="inbound"),
            )
        if event == "dtmf":
            dtmf = _obj(msg, "dtmf")
            digit = _str(dtmf, "digit")
            if len(digit) != 1 or digit not in "0123456789*#ABCDabcd":
                raise TwilioProtocolError("bad_field", "dtmf.digit")
            return Dtmf(digit.upper(), _str(dtmf, "track", default="inbound_track"), sequence)
        if event == "mark":
            name = _str(_obj(msg, "mark"), "name")
            if name in self.pending_marks:
                self.pending_marks.remove(name)
            return Mark(name, sequence)
        self.stopped = True
        return Stop(sequence)

    def _on_start(self, msg: dict[str, Any], sequence: int) -> Start:
        if self.start is not None:
            raise TwilioProtocolError("duplicate_start")
        start = _obj(msg, "start")
        fmt = _obj(start, "mediaFormat")
        media_format = MediaFormat(
            _str(fmt, "encoding"), _int(fmt, "sampleRate"), _int(fmt, "channels", default=1)
        )
        if media_format != MediaFormat(ULAW_ENCODING, TELEPHONY_RATE_HZ, 1):
            raise TwilioProtocolError("bad_media_format", repr(media_format)[:120])
        tracks = start.get("tracks", ["inbound"])
        if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
            raise TwilioProtocolError("bad_field", "start.tracks")
        stream_sid = _str(start, "streamSid", default=msg.get("streamSid"))
        if not stream_sid:
            raise TwilioProtocolError("missing_field", "streamSid")
        self.start = Start(
            stream_sid=stream_sid,
            call_sid=_str(start, "callSid", default=""),
            account_sid=_str(start, "accountSid", default=""),
            tracks=tuple(tracks),
            custom_parameters=_str_map(start.get("customParameters"), "customParameters"),
            media_format=media_format,
            sequence=sequence,
        )
        self._last_sequence = sequence
        return self.start

    def _count_sequence(self, sequence: int) -> None:
        last = self._last_sequence
        if last is not None and sequence > last + 1:
            self.sequence_gaps += sequence - last - 1
        self._last_sequence = sequence if last is None else max(last, sequence)

    def _stream_sid(self) -> str:
        if self.start is None:
            raise RuntimeError("no stream yet: Twilio has not sent start")
        return self.start.stream_sid

    def media(self, ulaw: bytes) -> str:
        if not ulaw:
            raise ValueError("empty mu-law payload")
        payload = base64.b64encode(ulaw).decode("ascii")
        return _dump(
            {"event": "media", "streamSid": self._stream_sid(), "media": {"payload": payload}}
        )

    def mark(self, name: str) -> str:
        sid = self._stream_sid()
        self.pending_marks.append(name)
        return _dump({"event": "mark", "streamSid": sid, "mark": {"name": name}})

    def clear(self) -> str:
        # Twilio answers clear by echoing every pending mark, which ``receive`` then retires.
        return _dump({"event": "clear", "streamSid": self._stream_sid()})


def _dump(msg: dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"))


# --- Twilio's side, for test clients and benchmarks --------------------------------------------


@dataclass
class TwilioPeer:
    """Builds what Twilio sends, numbered as Twilio numbers it, and parses the app's replies."""

    stream_sid: str
    call_sid: str = "CA00000000000000000000000000000000"
    account_sid: str = "AC00000000000000000000000000000000"
    sequence: int = 0
    chunk: int = 0
    timestamp_ms: int = 0

    def _next(self) -> str:
        self.sequence += 1
        return str(self.sequence)

    def connected(self) -> str:
        return _dump({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, custom_parameters: dict[str, str] | None = None) -> str:
        return _dump(
            {
                "event": "start",
                "sequenceNumber": self._next(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {
                        "encoding": ULAW_ENCODING,
                        "sampleRate": TELEPHONY_RATE_HZ,
                        "channels": 1,
                    },
                    "customParameters": custom_parameters or {},
                },
                "streamSid": self.stream_sid,
            }
        )

    def media(self, ulaw: bytes) -> str:
        self.chunk += 1
        msg = {
            "event": "media",
            "sequenceNumber": self._next(),
            "media": {
                "track": "inbound",
                "chunk": str(self.chunk),
                "timestamp": str(self.timestamp_ms),
                "payload": base64.b64encode(ulaw).decode("ascii"),
            },
            "streamSid": self.stream_sid,
        }
        self.timestamp_ms += len(ulaw) * 1000 // TELEPHONY_RATE_HZ or FRAME_MS
        return _dump(msg)

    def dtmf(self, digit: str) -> str:
        return _dump(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def mark(self, name: str) -> str:
        return _dump(
            {
                "event": "mark",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    def stop(self) -> str:
        return _dump(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )

    def parse(self, text: str | bytes, *, max_media_bytes: int = 1 << 20) -> AppMessage:
        """One message from the application: media, mark or clear, for our stream."""
        event, msg = _load(text)
        if event not in ("media", "mark", "clear"):
            raise TwilioProtocolError("unknown_event", event[:40])
        if _str(msg, "streamSid") != self.stream_sid:
            raise TwilioProtocolError("stream_mismatch", event)
        if event == "media":
            return OutboundMedia(_b64(_str(_obj(msg, "media"), "payload"), max_media_bytes))
        if event == "mark":
            return OutboundMark(_str(_obj(msg, "mark"), "name"))
        return Clear()
