"""The multiplexed agent link's framing: many calls' link frames in one WebSocket message.

Sans-I/O (style 1): bytes in -> typed records out, records in -> bytes out; no sockets, no clocks.
``serve --agent-link mux`` carries every call of a media worker over one WebSocket to each of
callbridge's own agent processes (path :data:`MUX_PATH`); each message is a *batch*, the records
one side had ready in one scheduling round, so that a tick's frames cost one write and one read.

A record, all integers big-endian::

    channel:u32 | kind:u8 | length:u32 | payload[length]

``channel`` names one call's link; the media core numbers them upwards from 1 and never reuses
one on a connection. Kinds: :data:`KIND_FRAME` (payload: one :mod:`proto.codec` frame, the same
bytes a per-call WebSocket message carries; a channel's first is its ``CallStart``) and
:data:`KIND_CLOSE` (payload: ``code:u16 | reason``, UTF-8, the WebSocket close's meaning: that
call's link is over). Isolation: a payload's own errors (bad protobuf, too large) are the
receiver's business for that one channel; a record the batch parser cannot frame at all ends
*that batch* (the records before it stand), and the next message starts afresh, so one bad record
never shifts another call's frames.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal, TypeAlias

from proto.codec import MAX_LINK_FRAME_BYTES

MUX_PATH = "/mux"
KIND_FRAME = 1
KIND_CLOSE = 2
HEADER = struct.Struct("!IBI")
CLOSE_HEAD = struct.Struct("!H")
MAX_RECORD_PAYLOAD_BYTES = MAX_LINK_FRAME_BYTES
"""A frame larger than a per-call link would carry is refused here too."""
MAX_BATCH_BYTES = 2 * MAX_LINK_FRAME_BYTES + 64
"""The largest message either side sends or accepts (the writer starts a new one before it)."""
MAX_REASON_BYTES = 123  # as a WebSocket close reason


class MuxError(ValueError):
    """A record that cannot be framed; ``channel`` is 0 where the header itself is cut."""

    def __init__(self, channel: int, reason: str) -> None:
        super().__init__(f"channel {channel}: {reason}" if channel else reason)
        self.channel = channel
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FrameRecord:
    channel: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseRecord:
    channel: int
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A record skipped (``channel`` known: only that call is affected) or the end of a batch's
    usable part (``channel`` 0: a cut header)."""

    channel: int
    reason: str
    fatal: bool = True
    """False: a record of a kind this side does not know (a newer peer), skipped; True: the
    call's stream lost a frame it cannot do without, so its link is over."""


MuxRecord: TypeAlias = FrameRecord | CloseRecord | BadRecord


def frame_record(channel: int, payload: bytes) -> bytes:
    if len(payload) > MAX_RECORD_PAYLOAD_BYTES:
        raise MuxError(channel, f"frame of {len(payload)} bytes exceeds {MAX_RECORD_PAYLOAD_BYTES}")
    return HEADER.pack(channel, KIND_FRAME, len(payload)) + payload


def close_record(channel: int, code: int, reason: str) -> bytes:
    # (cut at a character, not inside one)
    text = reason.encode("utf-8", "replace")[:MAX_REASON_BYTES].decode("utf-8", "ignore").encode()
    return (
        HEADER.pack(channel, KIND_CLOSE, CLOSE_HEAD.size + len(text)) + CLOSE_HEAD.pack(code) + text
    )


def parse_batch(data: bytes) -> list[MuxRecord]:
    """Every record of one message, in order. Never raises: what cannot be used is a
    :class:`BadRecord` (a cut or oversized record ends the batch; it cannot be skipped safely)."""
    if len(data) > MAX_BATCH_BYTES:
        return [BadRecord(0, f"batch of {len(data)} bytes exceeds {MAX_BATCH_BYTES}")]
    records: list[MuxRecord] = []
    at, end = 0, len(data)
    while at < end:
        if end - at < HEADER.size:
            records.append(BadRecord(0, f"cut record header ({end - at} of {HEADER.size} bytes)"))
            break
        channel, kind, length = HEADER.unpack_from(data, at)
        at += HEADER.size
        if channel == 0:
            records.append(BadRecord(0, "channel 0 is not a call"))
            break
        if length > MAX_RECORD_PAYLOAD_BYTES:
            records.append(BadRecord(channel, f"record of {length} bytes exceeds the limit"))
            break
        if end - at < length:
            records.append(BadRecord(channel, f"cut record ({end - at} of {length} bytes)"))
            break
        payload = data[at : at + length]
        at += length
        records.append(_record(channel, kind, payload))
    return records


def _record(channel: int, kind: int, payload: bytes) -> MuxRecord:
    if kind == KIND_FRAME:
        return FrameRecord(channel, payload)
    if kind == KIND_CLOSE:
        if len(payload) < CLOSE_HEAD.size:
            return BadRecord(channel, "close record without a code")
        (code,) = CLOSE_HEAD.unpack_from(payload)
        return CloseRecord(channel, code, payload[CLOSE_HEAD.size :].decode("utf-8", "replace"))
    return BadRecord(channel, f"unknown record kind {kind}", fatal=False)


class Batcher:
    """Records waiting to go out, cut into messages of at most :data:`MAX_BATCH_BYTES`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._bytes = 0
        self._full: list[bytes] = []

    def add(self, record: bytes) -> None:
        if self._bytes + len(record) > MAX_BATCH_BYTES:
            self._cut()
        self._parts.append(record)
        self._bytes += len(record)

    def __bool__(self) -> bool:
        return bool(self._parts or self._full)

    def take(self) -> list[bytes]:
        """The messages to send, in order; the batcher is empty afterwards."""
        self._cut()
        messages, self._full = self._full, []
        return messages

    def _cut(self) -> None:
        if self._parts:
            self._full.append(b"".join(self._parts))
            self._parts, self._bytes = [], 0


ChannelState: TypeAlias = Literal["open", "new", "stray"]


class ChannelTable:
    """The agent's view of the channels: which record opens a call, which belongs to one that
    is over (the media core numbers channels upwards and never reuses one)."""

    def __init__(self) -> None:
        self.open: set[int] = set()
        self._highest = 0

    def classify(self, channel: int) -> ChannelState:
        if channel in self.open:
            return "open"
        return "new" if channel > self._highest else "stray"

    def seen(self, channel: int) -> None:
        """A new channel was answered (opened or refused): later records of it are not new."""
        self._highest = max(self._highest, channel)

    def opened(self, channel: int) -> None:
        self.seen(channel)
        self.open.add(channel)

    def closed(self, channel: int) -> None:
        self.open.discard(channel)
