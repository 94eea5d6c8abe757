"""N-1 mixing for a bridge's participants at the link's 16 kHz: pure math, no clock (style 1).

One call of :meth:`Mixer.mix` is one 20 ms tick: a ``(participants, samples)`` array of PCM16 in,
the same shape out, row ``q`` of the output being the sum of every other row (never ``q``'s own
audio). The work is vectorised across participants so that one tick costs a fixed number of
numpy operations however many there are (the shape issue 15's batched media core wants).

- **Gain**: per participant, ``send_gain`` scales what the others hear of it and ``hear_gain``
  what it hears (its volume). Mute is a gain target of 0 on either side.
- **Click-free changes**: a join, a leave, a mute or unmute moves a level linearly over
  ``fade_ms`` (one frame by default) instead of stepping it, so a waveform is never cut.
- **Limiter**: each output row has its own gain envelope, which drops within the frame to keep
  every 5 ms block under :data:`LIMIT_THRESHOLD` (the frame is at hand, so the blocks ahead act
  as a free look-ahead) and recovers with a ``RELEASE_MS`` time constant; the envelope is state
  carried across frames and is linear within a block, so it never steps. The only overshoot is
  at the start of a frame whose first block is suddenly loud; a soft knee (tanh) bends that
  towards full scale instead of clipping it. Below the threshold the mix is the exact sum.
- **Announcements**: entry/exit tones (or any PCM) added to the outputs of chosen participants.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from media.audio import FRAME_MS, LINK_RATE_HZ, samples_per_frame

FloatArray = npt.NDArray[np.float64]
Pcm16Array = npt.NDArray[np.int16]

MIX_RATE_HZ = LINK_RATE_HZ
FRAME_SAMPLES = samples_per_frame(MIX_RATE_HZ)
FULL_SCALE = 32767.0
LIMIT_THRESHOLD = FULL_SCALE * 10 ** (-3 / 20)  # -3 dBFS: what the envelope holds peaks to
LIMITER_BLOCK_SAMPLES = 80  # 5 ms: the envelope's resolution; four blocks per frame
HOLD_MS = 100  # after a reduction the envelope holds: recovering between the peaks of a
# loud passage would modulate it at syllable and beat rates, which is heard as distortion
RELEASE_MS = 150.0  # then it recovers with this time constant
FADE_MS = 20  # one frame: long enough to remove a click, short enough not to eat a syllable
TONE_LEVEL_DBFS = -18.0
_GRID = 65536.0
TALK_THRESHOLD_RMS = FULL_SCALE * 10 ** (-40 / 20)  # input above -40 dBFS counts as talking


def tone_pcm(
    freqs_hz: Iterable[float], tone_ms: int = 120, rate_hz: int = MIX_RATE_HZ
) -> FloatArray:
    """Consecutive sine tones, each with 5 ms raised-cosine edges (no click at either end)."""
    n = rate_hz * tone_ms // 1000
    t = np.arange(n) / rate_hz
    edge = rate_hz * 5 // 1000
    envelope = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(edge) / edge)
    envelope[:edge], envelope[n - edge :] = ramp, ramp[::-1]
    level = FULL_SCALE * 10 ** (TONE_LEVEL_DBFS / 20)
    parts = [level * envelope * np.sin(2 * np.pi * f * t) for f in freqs_hz]
    return np.concatenate(parts) if parts else np.zeros(0)


ENTRY_TONE = tone_pcm((600.0, 900.0))  # rising: somebody came in
EXIT_TONE = tone_pcm((900.0, 600.0))  # falling: somebody left


@dataclass(slots=True)
class _Announcement:
    pcm: FloatArray
    hearers: frozenset[str]
    pos: int = 0


class _Columns:
    """Per-participant state as one array per field (row ``i`` is ``ids[i]``), so that a tick
    is a fixed number of numpy operations however many participants there are."""

    DEFAULTS: dict[str, float | bool] = {
        "send_gain": 1.0,
        "hear_gain": 1.0,
        "send_level": 0.0,  # where the fades stand (0 silent .. 1 full): a join fades in
        "hear_level": 0.0,
        "limiter_gain": 1.0,
        "limiter_hold": 0.0,  # limiter blocks left before the envelope may recover
        "mute_send": False,
        "mute_hear": False,
        "leaving": False,
        "loud": False,  # input above -40 dBFS in the last tick
    }

    def __init__(self) -> None:
        self.arrays: dict[str, npt.NDArray[np.float64] | npt.NDArray[np.bool_]] = {
            name: np.zeros(0, bool if isinstance(value, bool) else np.float64)
            for name, value in self.DEFAULTS.items()
        }

    def __getitem__(self, name: str) -> Any:
        return self.arrays[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self.arrays[name] = value

    def append(self, **values: float | bool) -> None:
        for name, array in self.arrays.items():
            self.arrays[name] = np.append(array, values.get(name, self.DEFAULTS[name]))

    def keep(self, rows: npt.NDArray[np.bool_]) -> None:
        for name, array in self.arrays.items():
            self.arrays[name] = array[rows]


class Mixer:
    """Who is in the mix and how; :meth:`mix` turns one tick of inputs into outputs."""

    def __init__(
        self, frame_samples: int = FRAME_SAMPLES, fade_ms: int = FADE_MS, rate_hz: int = MIX_RATE_HZ
    ) -> None:
        if frame_samples % LIMITER_BLOCK_SAMPLES:
            raise ValueError(f"frame_samples must be a multiple of {LIMITER_BLOCK_SAMPLES}")
        self.frame_samples = frame_samples
        self.rate_hz = rate_hz
        self._ids: list[str] = []
        self._cols = _Columns()
        self._announcements: list[_Announcement] = []
        self.last_mix: FloatArray = np.zeros(frame_samples)
        self._fade_step = min(1.0, FRAME_MS / max(1, fade_ms))
        block_s = LIMITER_BLOCK_SAMPLES / rate_hz
        self._hold_blocks = HOLD_MS * rate_hz // 1000 // LIMITER_BLOCK_SAMPLES
        self._release = float(1 - np.exp(-block_s / (RELEASE_MS / 1000)))
        self._ramp = np.arange(1, frame_samples + 1) / frame_samples
        self._block_ramp = np.arange(LIMITER_BLOCK_SAMPLES) / LIMITER_BLOCK_SAMPLES

    # ---- membership and settings ---------------------------------------------------------

    @property
    def ids(self) -> tuple[str, ...]:
        """The participants in the order :meth:`mix` expects its rows (leaving ones included
        until their fade-out frame has been mixed)."""
        return tuple(self._ids)

    @property
    def talking(self) -> dict[str, bool]:
        """Whose input was above -40 dBFS in the last tick."""
        return {pid: bool(loud) for pid, loud in zip(self._ids, self._cols["loud"], strict=True)}

    def _row(self, pid: str) -> int:
        try:
            return self._ids.index(pid)
        except ValueError:
            raise KeyError(f"{pid} is not in the mix") from None

    def __contains__(self, pid: str) -> bool:
        return pid in self._ids and not self._cols["leaving"][self._ids.index(pid)]

    def add(self, pid: str, send_gain: float = 1.0, hear_gain: float = 1.0) -> None:
        """Fade ``pid`` in from the next mix (back in, from where it stands, if it was still
        fading out)."""
        if pid in self._ids:
            if pid in self:
                raise KeyError(f"{pid} is already in the mix")
            row = self._ids.index(pid)
            self._cols["leaving"][row] = False
            self._cols["mute_send"][row] = self._cols["mute_hear"][row] = False
            self.set_gain(pid, send_gain, hear_gain)
            return
        self._cols.append(send_gain=_gain(send_gain), hear_gain=_gain(hear_gain))
        self._ids.append(pid)

    def remove(self, pid: str) -> None:
        """Fade ``pid`` out over the next mix; it is gone from :attr:`ids` after that."""
        if pid in self._ids:
            self._cols["leaving"][self._ids.index(pid)] = True

    def set_gain(
        self, pid: str, send_gain: float | None = None, hear_gain: float | None = None
    ) -> None:
        row = self._row(pid)
        if send_gain is not None:
            self._cols["send_gain"][row] = _gain(send_gain)
        if hear_gain is not None:
            self._cols["hear_gain"][row] = _gain(hear_gain)

    def set_mute(self, pid: str, send: bool | None = None, hear: bool | None = None) -> None:
        row = self._row(pid)
        if send is not None:
            self._cols["mute_send"][row] = send
        if hear is not None:
            self._cols["mute_hear"][row] = hear

    def announce(self, pcm: FloatArray, hearers: Iterable[str]) -> None:
        """Play ``pcm`` (at the mix rate) into the outputs of ``hearers`` from the next mix on."""
        who = frozenset(p for p in hearers if p in self)
        if who and pcm.size:
            self._announcements.append(_Announcement(pcm, who))

    def clear_announcements(self) -> None:
        """Stop whatever is being announced (ringback once the callee answers)."""
        self._announcements.clear()

    # ---- one tick ------------------------------------------------------------------------

    def mix(self, frames: Pcm16Array) -> Pcm16Array:
        """``frames[i]`` is the input of ``ids[i]``; returns each one's output, same shape."""
        n = len(self._ids)
        if frames.shape != (n, self.frame_samples):
            raise ValueError(f"expected {(n, self.frame_samples)}, got {frames.shape}")
        if not n:
            return np.zeros((0, self.frame_samples), np.int16)
        cols = self._cols
        x = frames.astype(np.float64)
        send_to = self._toward(cols["send_level"], cols["mute_send"] | cols["leaving"])
        hear_to = self._toward(cols["hear_level"], cols["mute_hear"] | cols["leaving"])
        send = self._gains(cols["send_gain"], cols["send_level"], send_to)
        contribution = x * send
        # On a 2**-16 grid every sum below is exact in float64 (33 significant bits and a few
        # for the count), so total - own is exactly the others' sum: q's input cannot leak
        # into q's output even by a rounding. PCM16 times a steady gain on that grid (1.0,
        # 0.5...) is on it already; a fade's ramp or a gain like 0.7 is brought onto it.
        scaled = send * _GRID
        if send.shape[1] > 1 or not np.array_equal(scaled, np.round(scaled)):
            contribution = np.round(contribution * _GRID) / _GRID
        total = contribution.sum(axis=0)
        self.last_mix = total  # everyone's sum: what a recording of the bridge holds
        y = (total[None, :] - contribution) * self._gains(
            cols["hear_gain"], cols["hear_level"], hear_to
        )
        self._add_announcements(y)
        y = self._limit(y)
        cols["loud"] = np.einsum("ij,ij->i", x, x) > TALK_THRESHOLD_RMS**2 * self.frame_samples
        cols["send_level"], cols["hear_level"] = send_to, hear_to
        out = np.rint(y).astype(np.int16)
        gone = cols["leaving"] & (send_to == 0.0)
        if gone.any():
            cols.keep(~gone)
            self._ids = [pid for pid, g in zip(self._ids, gone, strict=True) if not g]
        return out

    def _toward(self, level: FloatArray, off: npt.NDArray[np.bool_]) -> FloatArray:
        target = np.where(off, 0.0, 1.0)
        step = self._fade_step
        return np.asarray(level + np.clip(target - level, -step, step), np.float64)

    def _gains(self, gain: FloatArray, start: FloatArray, end: FloatArray) -> FloatArray:
        """Per row, ``gain`` times a linear move from ``start`` (just before the frame) to
        ``end`` (its last sample); a column when nothing moves (the usual tick)."""
        if np.array_equal(start, end):
            return np.asarray((gain * end)[:, None], np.float64)
        ramp = start[:, None] + (end - start)[:, None] * self._ramp[None, :]
        return np.asarray(gain[:, None] * ramp, np.float64)

    def _add_announcements(self, y: FloatArray) -> None:
        for ann in self._announcements:
            chunk = ann.pcm[ann.pos : ann.pos + self.frame_samples]
            rows = [i for i, pid in enumerate(self._ids) if pid in ann.hearers]
            y[rows, : chunk.size] += chunk
            ann.pos += self.frame_samples
        self._announcements = [a for a in self._announcements if a.pos < a.pcm.size]

    def _limit(self, y: FloatArray) -> FloatArray:
        cols = self._cols
        gain_now, hold = cols["limiter_gain"], cols["limiter_hold"]
        if np.abs(y).max() <= LIMIT_THRESHOLD and (gain_now == 1.0).all():
            return y  # the usual tick: below the threshold, nothing to ride
        n, blocks = len(self._ids), self.frame_samples // LIMITER_BLOCK_SAMPLES
        shaped = y.reshape(n, blocks, LIMITER_BLOCK_SAMPLES)
        need = np.minimum(1.0, LIMIT_THRESHOLD / np.maximum(np.abs(shaped).max(axis=2), 1e-9))
        # Envelope at each block boundary: never above what this block or the next needs;
        # after a reduction it holds, then recovers towards 1 at the release rate.
        edges = np.empty((n, blocks + 1))
        edges[:, 0] = gain_now
        for b in range(blocks):
            now = edges[:, b]
            target = np.minimum(need[:, b], need[:, b + 1] if b + 1 < blocks else 1.0)
            recovered = np.where(hold > 0, now, now + (1.0 - now) * self._release)
            reduce = target < now
            edges[:, b + 1] = np.where(reduce, target, np.minimum(target, recovered))
            hold = np.where(reduce, self._hold_blocks, np.maximum(hold - 1, 0))
        start, end = edges[:, :-1, None], edges[:, 1:, None]
        gain = start + (end - start) * self._block_ramp[None, None, :]
        out = (shaped * gain).reshape(n, self.frame_samples)
        cols["limiter_gain"], cols["limiter_hold"] = edges[:, -1].copy(), hold
        return soft_clip(out)


def soft_clip(y: FloatArray) -> FloatArray:
    """Identity up to :data:`LIMIT_THRESHOLD`; above it a tanh knee that never reaches full
    scale and has no corner (a hard clip's corner is what makes clipping sound harsh)."""
    over = np.abs(y) - LIMIT_THRESHOLD
    if not (over > 0).any():
        return y
    room = FULL_SCALE - LIMIT_THRESHOLD
    bent = np.sign(y) * (LIMIT_THRESHOLD + room * np.tanh(np.maximum(over, 0) / room))
    return np.where(over > 0, bent, y)


def _gain(value: float) -> float:
    if not 0.0 <= value <= 4.0:
        raise ValueError(f"gain {value} outside 0..4")
    return float(value)
