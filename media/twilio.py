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
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from media.audio import FRAME_MS, TELEPHONY_RATE_HZ
from media.twilio_fields import MAX_MESSAGE_CHARS as MAX_MESSAGE_CHARS  # re-exported
from media.twilio_fields import TwilioProtocolError as TwilioProtocolError  # re-exported
from media.twilio_fields import (
    b64_payload,
    dump,
    int_field,
    load_message,
    obj_field,
    str_field,
    str_map,
)

ULAW_ENCODING = "audio/x-mulaw"
MAX_PENDING_MARKS = 256
DEFAULT_MAX_MEDIA_MS = 200
"""Twilio sends 20 ms chunks; 200 ms leaves room for other clients without unbounded frames."""


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
    # Our media messages differ only in their payload: the rest is built once, at start.
    _media_head: str = ""

    @property
    def max_media_bytes(self) -> int:
        return TELEPHONY_RATE_HZ * self.max_media_ms // 1000

    def receive(self, text: str | bytes) -> TwilioEvent:
        event, msg = load_message(text)
        if self.stopped:
            raise TwilioProtocolError("after_stop", event)
        if event == "connected":
            if self.start is not None or self._last_sequence is not None:
                raise TwilioProtocolError("out_of_order", "connected after start")
            return Connected(str_field(msg, "protocol", default="Call"), str_field(msg, "version"))
        if event not in ("start", "media", "dtmf", "mark", "stop"):
            raise TwilioProtocolError("unknown_event", event[:40])
        sequence = int_field(msg, "sequenceNumber")
        if event == "start":
            return self._on_start(msg, sequence)
        if self.start is None:
            raise TwilioProtocolError("before_start", event)
        if str_field(msg, "streamSid") != self.start.stream_sid:
            raise TwilioProtocolError("stream_mismatch", event)
        self._count_sequence(sequence)
        if event == "media":
            media = obj_field(msg, "media")
            return Media(
                ulaw=b64_payload(str_field(media, "payload"), self.max_media_bytes),
                sequence=sequence,
                chunk=int_field(media, "chunk"),
                timestamp_ms=int_field(media, "timestamp"),
                track=str_field(media, "track", default="inbound"),
            )
        if event == "dtmf":
            dtmf = obj_field(msg, "dtmf")
            digit = str_field(dtmf, "digit")
            if len(digit) != 1 or digit not in "0123456789*#ABCDabcd":
                raise TwilioProtocolError("bad_field", "dtmf.digit")
            return Dtmf(digit.upper(), str_field(dtmf, "track", default="inbound_track"), sequence)
        if event == "mark":
            name = str_field(obj_field(msg, "mark"), "name")
            if name in self.pending_marks:
                self.pending_marks.remove(name)
            return Mark(name, sequence)
        self.stopped = True
        return Stop(sequence)

    def _on_start(self, msg: dict[str, Any], sequence: int) -> Start:
        if self.start is not None:
            raise TwilioProtocolError("duplicate_start")
        start = obj_field(msg, "start")
        fmt = obj_field(start, "mediaFormat")
        media_format = MediaFormat(
            str_field(fmt, "encoding"),
            int_field(fmt, "sampleRate"),
            int_field(fmt, "channels", default=1),
        )
        if media_format != MediaFormat(ULAW_ENCODING, TELEPHONY_RATE_HZ, 1):
            raise TwilioProtocolError("bad_media_format", repr(media_format)[:120])
        tracks = start.get("tracks", ["inbound"])
        if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
            raise TwilioProtocolError("bad_field", "start.tracks")
        stream_sid = str_field(start, "streamSid", default=msg.get("streamSid"))
        if not stream_sid:
            raise TwilioProtocolError("missing_field", "streamSid")
        self.start = Start(
            stream_sid=stream_sid,
            call_sid=str_field(start, "callSid", default=""),
            account_sid=str_field(start, "accountSid", default=""),
            tracks=tuple(tracks),
            custom_parameters=str_map(start.get("customParameters"), "customParameters"),
            media_format=media_format,
            sequence=sequence,
        )
        self._last_sequence = sequence
        self._media_head = dump({"event": "media", "streamSid": stream_sid, "media": {}})[:-2]
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
        """``{"event":"media","streamSid":...,"media":{"payload":...}}``, compact."""
        if not ulaw:
            raise ValueError("empty mu-law payload")
        self._stream_sid()  # no stream yet: our bug
        payload = binascii.b2a_base64(ulaw, newline=False).decode("ascii")
        return f'{self._media_head}"payload":"{payload}"}}}}'

    def mark(self, name: str) -> str:
        sid = self._stream_sid()
        self.pending_marks.append(name)
        return dump({"event": "mark", "streamSid": sid, "mark": {"name": name}})

    def clear(self) -> str:
        # Twilio answers clear by echoing every pending mark, which ``receive`` then retires.
        return dump({"event": "clear", "streamSid": self._stream_sid()})


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
        return dump({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, custom_parameters: dict[str, str] | None = None) -> str:
        return dump(
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
        return dump(msg)

    def dtmf(self, digit: str) -> str:
        return dump(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def mark(self, name: str) -> str:
        return dump(
            {
                "event": "mark",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    def stop(self) -> str:
        return dump(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )

    def parse(self, text: str | bytes, *, max_media_bytes: int = 1 << 20) -> AppMessage:
        """One message from the application: media, mark or clear, for our stream."""
        event, msg = load_message(text)
        if event not in ("media", "mark", "clear"):
            raise TwilioProtocolError("unknown_event", event[:40])
        if str_field(msg, "streamSid") != self.stream_sid:
            raise TwilioProtocolError("stream_mismatch", event)
        if event == "media":
            payload = str_field(obj_field(msg, "media"), "payload")
            return OutboundMedia(b64_payload(payload, max_media_bytes))
        if event == "mark":
            return OutboundMark(str_field(obj_field(msg, "mark"), "name"))
        return Clear()
