"""Call recording as a two-channel WAV (caller left, agent right), streamed, never whole in memory.

Sans-I/O: :class:`StereoRecorder` takes PCM with the time it was heard or played and hands back
interleaved bytes that are final; :mod:`media.recording_leg` owns the file. Time decides where audio
lands, so the channels stay aligned when one side is silent (an agent that says nothing sends no
frames), when a leg buffers agent audio ahead of time (Twilio, chan_websocket), and on barge-in,
when the peer throws away the agent audio it had not played yet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import soxr

CALLER = 0
AGENT = 1
SAMPLE_BYTES = 2
WAV_HEADER_BYTES = 44


def wav_header(rate_hz: int, channels: int, data_bytes: int) -> bytes:
    """A canonical 44-byte PCM16 WAV header for ``data_bytes`` of sample data."""
    block = channels * SAMPLE_BYTES
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", 36 + data_bytes),
            b"WAVEfmt ",
            struct.pack("<IHHIIHH", 16, 1, channels, rate_hz, rate_hz * block, block, 16),
            b"data",
            struct.pack("<I", data_bytes),
        )
    )


@dataclass(slots=True)
class _Channel:
    pending: bytearray = field(default_factory=bytearray)

    def samples(self) -> int:
        return len(self.pending) // SAMPLE_BYTES

    def pad_to(self, count: int) -> None:
        missing = count - self.samples()
        if missing > 0:
            self.pending += bytes(missing * SAMPLE_BYTES)

    def cut(self, count: int) -> bytes:
        self.pad_to(count)
        head = bytes(self.pending[: count * SAMPLE_BYTES])
        del self.pending[: count * SAMPLE_BYTES]
        return head


class StereoRecorder:
    """Places caller and agent audio on one timeline and releases it once it can no longer change.

    The timeline starts at ``start_s``, or with the first audio when that is None.
    ``hold_s`` is how long audio stays open to late arrivals before it is written out. A gap in a
    channel longer than its tolerance becomes silence of the right length: short for the agent
    (paced frames stop when it has nothing to say), long for the caller, whose audio is
    continuous and only arrives late when the network stalls.
    """

    def __init__(
        self,
        rate_hz: int,
        start_s: float | None = None,
        hold_s: float = 0.2,
        caller_gap_s: float = 0.5,
        agent_gap_s: float = 0.01,
    ) -> None:
        self._start_s = start_s
        self._hold_s = hold_s
        self._gaps_s = (caller_gap_s, agent_gap_s)
        self._set_rate(rate_hz)
        self._base = 0  # timeline index of the first pending sample, the same for both channels
        self._channels = (_Channel(), _Channel())

    def _set_rate(self, rate_hz: int) -> None:
        self.rate_hz = rate_hz
        self._hold = int(self._hold_s * rate_hz)
        self._gaps = (int(self._gaps_s[0] * rate_hz), int(self._gaps_s[1] * rate_hz))

    @property
    def released(self) -> bool:
        """Has any audio been handed out (by :meth:`take`)? Its rate is then the file's."""
        return self._base > 0

    def retune(self, rate_hz: int) -> None:
        """The leg learnt its real rate (AudioSocket says it with the caller's first frame):
        audio still pending is converted to it, whole, so nothing is lost or played at the
        wrong speed. Only before anything was released: a WAV has one rate."""
        if rate_hz == self.rate_hz:
            return
        if self.released:
            raise ValueError(f"recording already at {self.rate_hz} Hz on disk")
        for chan in self._channels:
            if chan.pending:
                pcm = np.frombuffer(bytes(chan.pending), dtype="<i2")
                converted = np.asarray(soxr.resample(pcm, self.rate_hz, rate_hz), dtype="<i2")
                chan.pending = bytearray(converted.tobytes())
        self._set_rate(rate_hz)

    def _now(self, now_s: float) -> int:
        if self._start_s is None:
            return 0
        return max(0, int((now_s - self._start_s) * self.rate_hz))

    def add(self, channel: int, pcm16: bytes, now_s: float) -> None:
        """``pcm16`` was heard (caller) or handed to the leg (agent) at ``now_s``."""
        if self._start_s is None:  # the timeline starts with the first audio, whoever's it is
            heard_for = len(pcm16) // SAMPLE_BYTES if channel == CALLER else 0
            self._start_s = now_s - heard_for / self.rate_hz
        chan = self._channels[channel]
        starts_at = self._now(now_s) - self._base
        if channel == CALLER:  # heard until now; agent audio plays from now on
            starts_at -= len(pcm16) // SAMPLE_BYTES
        if starts_at - chan.samples() > self._gaps[channel]:
            chan.pad_to(starts_at)
        chan.pending += pcm16

    def clear_agent(self, now_s: float) -> None:
        """Barge-in: agent audio queued at the peer beyond ``now_s`` was never played."""
        chan = self._channels[AGENT]
        keep = max(0, self._now(now_s) - self._base)
        del chan.pending[keep * SAMPLE_BYTES :]

    def take(self, now_s: float) -> bytes:
        """Interleaved stereo that is final: everything older than ``hold_s`` before ``now_s``."""
        return self._release(self._now(now_s) - self._hold - self._base)

    def finish(self) -> bytes:
        """All that is left, the shorter channel padded with silence."""
        return self._release(max(chan.samples() for chan in self._channels))

    def _release(self, count: int) -> bytes:
        if count <= 0:
            return b""
        caller, agent = (chan.cut(count) for chan in self._channels)
        self._base += count
        stereo = np.empty(2 * count, dtype="<i2")
        stereo[0::2] = np.frombuffer(caller, dtype="<i2")
        stereo[1::2] = np.frombuffer(agent, dtype="<i2")
        return stereo.tobytes()
