"""Asterisk AudioSocket (``res_audiosocket``), sans-I/O: bytes in -> typed events, events -> bytes.

Wire format: ``kind:u8 | length:u16 big-endian | payload``. Kinds: 0x00 hangup, 0x01 UUID (16 raw
bytes, always first), 0x03 DTMF (one ASCII digit), 0x10 slin 8 kHz, 0x11..0x18 slin at 12, 16, 24,
32, 44.1, 48, 96 and 192 kHz (an older draft numbered slin16 as 0x11: ``Numbering.DRAFT``), 0xff
error (flags: 0x01 hung up, 0x02 forwarding error, 0x04 memory). PCM is signed 16-bit little-endian
mono. Asterisk drops anything it receives except audio and hangup, so the server side can only
encode those; :func:`encode_frame` is for test peers that play Asterisk's part.

Like h11, :class:`AudioSocketConnection` never touches a socket or a clock: feed it with
:meth:`~AudioSocketConnection.receive_data` (``b""`` meaning EOF) and drain
:meth:`~AudioSocketConnection.next_event`. A violation raises :class:`AudioSocketError` whose
``reason`` is a short, stable label for logs and metrics; the connection is unusable afterwards.
"""

from __future__ import annotations

import enum
import struct
import uuid
from dataclasses import dataclass
from typing import Final, TypeAlias

from media.audio import BYTES_PER_SAMPLE, FRAME_MS, pcm16_bytes_per_frame

HEADER = struct.Struct(">BH")
HEADER_BYTES: Final = HEADER.size
MAX_PAYLOAD_BYTES: Final = 0xFFFF


class Kind(enum.IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    SLIN = 0x10
    ERROR = 0xFF


class Numbering(enum.Enum):
    """Which table maps audio kinds to rates: Asterisk today, or the draft with 0x11 = slin16."""

    CURRENT = "current"
    DRAFT = "draft"


_CURRENT_RATES_HZ: Final = {
    0x10: 8_000,
    0x11: 12_000,
    0x12: 16_000,
    0x13: 24_000,
    0x14: 32_000,
    0x15: 44_100,
    0x16: 48_000,
    0x17: 96_000,
    0x18: 192_000,
}
_DRAFT_RATES_HZ: Final = {0x10: 8_000, 0x11: 16_000}

DTMF_DIGITS: Final = frozenset(b"0123456789*#ABCD")


class ErrorFlag(enum.IntFlag):
    HANGUP = 0x01
    FORWARDING = 0x02
    MEMORY = 0x04


class AudioSocketError(Exception):
    """The peer broke the protocol; ``reason`` labels the failure for logs and metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class CallUuid:
    uuid: uuid.UUID


@dataclass(frozen=True, slots=True)
class Audio:
    pcm16: bytes
    rate_hz: int


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class Hangup:
    """The peer sent kind 0x00, or closed the connection cleanly between frames."""

    by_eof: bool = False


@dataclass(frozen=True, slots=True)
class PeerError:
    """Kind 0xff: Asterisk reports a failure on its side."""

    flags: ErrorFlag


class NeedData:
    """Sentinel: nothing more until more bytes arrive."""


NEED_DATA: Final = NeedData()

Event: TypeAlias = CallUuid | Audio | Dtmf | Hangup | PeerError


def rate_table(numbering: Numbering) -> dict[int, int]:
    """Audio kind -> sample rate in Hz for a numbering."""
    if numbering is Numbering.DRAFT:
        return dict(_DRAFT_RATES_HZ)
    return dict(_CURRENT_RATES_HZ)


def audio_kind(rate_hz: int, numbering: Numbering = Numbering.CURRENT) -> int:
    """The kind byte that carries slin at ``rate_hz``."""
    for kind, r in rate_table(numbering).items():
        if r == rate_hz:
            return kind
    raise ValueError(f"AudioSocket has no kind for {rate_hz} Hz in {numbering.value} numbering")


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    """Any frame, for peers playing Asterisk's side (tests, load generators)."""
    if not 0 <= kind <= 0xFF or len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError("kind must fit a byte and payload 65535 bytes")
    return HEADER.pack(kind, len(payload)) + payload


class AudioSocketConnection:
    """The server's (callbridge's) side of one AudioSocket connection.

    ``max_frame_ms`` bounds one inbound audio payload (Asterisk sends 20 ms); anything longer is
    treated as an attack or a bug, not buffered.
    """

    def __init__(self, numbering: Numbering = Numbering.CURRENT, max_frame_ms: int = 100) -> None:
        self._rates_hz = rate_table(numbering)
        self._numbering = numbering
        self._max_frame_ms = max_frame_ms
        self._audio_limits = {
            k: pcm16_bytes_per_frame(r, max_frame_ms) for k, r in self._rates_hz.items()
        }
        self._out_kinds: dict[int, tuple[int, int]] = {}  # rate -> (kind, bytes per 20 ms)
        self._buf = bytearray()
        self._eof = False
        self._done = False
        self.call_uuid: uuid.UUID | None = None
        self.rate_hz: int | None = None  # the rate of the first audio frame; fixed thereafter

    # ---- inbound --------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the socket; ``b""`` means the peer closed its side."""
        if self._eof and data:
            raise RuntimeError("receive_data after EOF")
        if data:
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event | NeedData:
        """The next complete event, :data:`NEED_DATA`, or raise :class:`AudioSocketError`."""
        if self._done:
            raise RuntimeError("connection already finished")
        if len(self._buf) < HEADER_BYTES:
            return self._at_short_buffer()
        kind, length = HEADER.unpack_from(self._buf)
        self._check_header(kind, length)
        end = HEADER_BYTES + length
        if len(self._buf) < end:
            return self._at_short_buffer()
        payload = bytes(self._buf[HEADER_BYTES:end])
        del self._buf[:end]
        event = self._event(kind, payload)
        if isinstance(event, Hangup):
            self._done = True
        return event

    def _at_short_buffer(self) -> Event | NeedData:
        if not self._eof:
            return NEED_DATA
        self._done = True
        if self._buf:
            raise AudioSocketError(
                "truncated", f"connection closed inside a frame ({len(self._buf)} bytes)"
            )
        return Hangup(by_eof=True)

    def _check_header(self, kind: int, length: int) -> None:
        limit = self._audio_limits.get(kind)
        if limit is not None:
            if length == 0:
                raise AudioSocketError("zero_length", f"audio kind 0x{kind:02x} with no samples")
            if length > limit:
                raise AudioSocketError(
                    "oversized", f"{length} bytes of audio > {self._max_frame_ms} ms"
                )
            return
        expected = {Kind.HANGUP: (0, 0), Kind.UUID: (16, 16), Kind.DTMF: (1, 1), Kind.ERROR: (0, 1)}
        try:
            low, high = expected[Kind(kind)]
        except ValueError:
            raise AudioSocketError("unknown_kind", f"kind 0x{kind:02x}") from None
        if not low <= length <= high:
            raise AudioSocketError("bad_length", f"kind 0x{kind:02x} with {length} bytes")

    def _event(self, kind: int, payload: bytes) -> Event:
        if kind in self._rates_hz and self.call_uuid is not None:
            return self._audio(kind, payload)  # the common case first
        if kind == Kind.UUID:
            if self.call_uuid is not None:
                raise AudioSocketError("duplicate_uuid", "a second UUID frame")
            self.call_uuid = uuid.UUID(bytes=payload)
            return CallUuid(self.call_uuid)
        if kind == Kind.HANGUP:
            return Hangup()
        if kind == Kind.ERROR:
            return PeerError(ErrorFlag(payload[0] if payload else 0))
        if self.call_uuid is None:
            raise AudioSocketError("before_uuid", f"kind 0x{kind:02x} before the UUID frame")
        if kind == Kind.DTMF:
            if payload[0] not in DTMF_DIGITS:
                raise AudioSocketError("bad_dtmf", f"digit byte 0x{payload[0]:02x}")
            return Dtmf(chr(payload[0]))
        return self._audio(kind, payload)

    def _audio(self, kind: int, payload: bytes) -> Audio:
        rate_hz = self._rates_hz[kind]
        if len(payload) % BYTES_PER_SAMPLE:
            raise AudioSocketError("odd_length", f"{len(payload)} bytes is not whole samples")
        if self.rate_hz is None:
            self.rate_hz = rate_hz
        elif rate_hz != self.rate_hz:
            raise AudioSocketError("rate_changed", f"{self.rate_hz} Hz then {rate_hz} Hz")
        return Audio(payload, rate_hz)

    # ---- outbound -------------------------------------------------------------------------

    def send_audio(self, pcm16: bytes, rate_hz: int) -> bytes:
        """Frames carrying ``pcm16``, each at most one 20 ms frame (Asterisk plays what it gets)."""
        if len(pcm16) % BYTES_PER_SAMPLE:
            raise ValueError("pcm16 must be whole samples")
        known = self._out_kinds.get(rate_hz)
        if known is None:
            known = self._out_kinds[rate_hz] = (
                audio_kind(rate_hz, self._numbering),
                pcm16_bytes_per_frame(rate_hz, FRAME_MS),
            )
        kind, step = known
        if 0 < len(pcm16) <= step:  # the pacer's one frame
            return HEADER.pack(kind, len(pcm16)) + pcm16
        view = memoryview(pcm16)
        return b"".join(
            HEADER.pack(kind, len(view[i : i + step])) + view[i : i + step]
            for i in range(0, len(pcm16), step)
        )

    def send_hangup(self) -> bytes:
        return HEADER.pack(Kind.HANGUP, 0)
