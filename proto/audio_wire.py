"""The audio frame's wire bytes without building a protobuf message: the link's hot path.

An audio ``Frame`` is 50 per second per call in each direction; building and serialising a
``pb.Frame`` for each costs several microseconds, most of it object churn. Protobuf's encoding of
``Frame{audio: AudioRawFrame{audio=3, sample_rate=4, num_channels=5}}`` is fixed (fields in
number order, proto3 defaults left out, lengths as varints; protobuf encoding spec, "Message
Structure"), so it is a header, the PCM and a trailer, and the header and trailer depend only on
the PCM length, the rate and the channel count. ``tests/proto/test_audio_wire.py`` proves the
bytes identical to protobuf's own for every length class.

Decoding takes the same shortcut only for frames shaped exactly that way (what we and our echo
agent send); anything else (pipecat's frames carry ``id`` and ``name``, a ``pts``, repeated
fields) returns ``None`` and goes through protobuf.
"""

from __future__ import annotations

from functools import lru_cache

_FRAME_AUDIO_TAG = 0x12  # Frame.audio: field 2, length-delimited
_AUDIO_TAG = 0x1A  # AudioRawFrame.audio: field 3, length-delimited
_RATE_TAG = 0x20  # AudioRawFrame.sample_rate: field 4, varint
_CHANNELS_TAG = 0x28  # AudioRawFrame.num_channels: field 5, varint


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@lru_cache(maxsize=64)
def _framing(n_bytes: int, rate_hz: int, channels: int) -> tuple[bytes, bytes]:
    """(what goes before the PCM, what goes after it) for one length, rate and channel count."""
    audio = bytes([_AUDIO_TAG]) + _varint(n_bytes) if n_bytes else b""
    trailer = bytes([_RATE_TAG]) + _varint(rate_hz) if rate_hz else b""
    if channels:
        trailer += bytes([_CHANNELS_TAG]) + _varint(channels)
    inner_len = len(audio) + n_bytes + len(trailer)
    return bytes([_FRAME_AUDIO_TAG]) + _varint(inner_len) + audio, trailer


def encode_audio(pcm16: bytes, rate_hz: int, channels: int) -> bytes:
    """Protobuf's exact bytes for ``Frame{audio{audio, sample_rate, num_channels}}``."""
    head, tail = _framing(len(pcm16), rate_hz, channels)
    return b"".join((head, pcm16, tail))


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position); raises IndexError past the end, ValueError if over 64 bits."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


_Shape = tuple[bytes, bytes, int, int]  # head, tail, rate, channels
_recent: dict[int, _Shape] = {}  # by frame length: the shapes a link sends over and over
_RECENT_MAX = 64


def decode_audio(data: bytes) -> tuple[bytes, int, int] | None:
    """(pcm16, sample_rate, num_channels) of a plain audio frame, or None for anything else
    (then protobuf decides: another frame kind, extra fields, or a malformed frame)."""
    shape = _recent.get(len(data))
    if shape is not None and data.startswith(shape[0]) and data.endswith(shape[1]):
        # The head fixes the PCM length and the total length fixes where the tail starts, so
        # matching both bytes-wise is the whole parse.
        return data[len(shape[0]) : len(data) - len(shape[1])], shape[2], shape[3]
    parsed = _parse(data)
    if parsed is not None:
        pcm16, rate_hz, channels = parsed
        if len(_recent) >= _RECENT_MAX:
            _recent.clear()
        head, tail = _framing(len(pcm16), rate_hz, channels)
        if len(head) + len(pcm16) + len(tail) == len(data):  # canonical encoding only
            _recent[len(data)] = (head, tail, rate_hz, channels)
    return parsed


def _parse(data: bytes) -> tuple[bytes, int, int] | None:
    if not data or data[0] != _FRAME_AUDIO_TAG:
        return None
    try:
        inner_len, pos = _read_varint(data, 1)
        if pos + inner_len != len(data):
            return None
        pcm16, rate_hz, channels = b"", 0, 0
        seen = 0
        while pos < len(data):
            tag = data[pos]
            if tag == _AUDIO_TAG and seen < 1:
                n, pos = _read_varint(data, pos + 1)
                if pos + n > len(data):
                    return None
                pcm16, pos, seen = data[pos : pos + n], pos + n, 1
            elif tag == _RATE_TAG and seen < 2:
                rate_hz, pos = _read_varint(data, pos + 1)
                seen = 2
            elif tag == _CHANNELS_TAG and seen < 3:
                channels, pos = _read_varint(data, pos + 1)
                seen = 3
            else:
                return None
    except (IndexError, ValueError):
        return None
    if rate_hz > 0xFFFFFFFF or channels > 0xFFFFFFFF:
        return None  # protobuf truncates oversized uint32 values; let it decide
    return pcm16, rate_hz, channels
