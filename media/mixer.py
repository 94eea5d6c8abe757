"""N-1 mixing for a bridge's participants at the link's 16 kHz: pure math, no clock (style 1).

One call of :meth:`Mixer.mix` is one 20 ms tick: a ``(participants, samples)`` array of PCM16 in,
the same shape out, row ``q`` of the output being the sum of every other row (never ``q``'s own
audio). The work is vectorised across participants so that one tick costs a fixed number of
numpy operations however many there are (the shape issue 15's batched media core wants), and
the usual tick (nobody fading, every gain 1, nobody above the limiter's threshold) is a handful
of them: whole-number sums in float32, exact, with nothing else to ride.

- **Gain**: per participant, ``send_gain`` scales what the others hear of it and ``hear_gain``
  what it hears (its volume). Mute is a gain target of 0 on either side.
- **Click-free changes**: a join, a leave, a mute or unmute moves a level linearly over
  ``fade_ms`` (one frame by default) instead of stepping it, so a waveform is never cut.
- **Limiter**: each output row has its own gain envelope, which drops within the frame to keep
  every 5 ms block under :data:`LIMIT_THRESHOLD` (the frame is at hand, so the blocks ahead act
  as a free look-ahead), holds for ``HOLD_MS`` (whole frames) after it came down, and recovers
  with a ``RELEASE_MS`` time constant; the envelope is state carried across frames and is
  linear within a block, so it never steps. Every row and block is computed at once (a running
  minimum and a closed-form recovery, no loop). The only overshoot is at the start of a frame
  whose first block is suddenly loud; a soft knee (tanh) bends that towards full scale instead
  of clipping it. Below the threshold the mix is the exact sum.
- **Announcements**: entry/exit tones (or any PCM) added to the outputs of chosen participants.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

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
        "limiter_hold": 0.0,  # frames left before the limiter's envelope may recover
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


class _Plan(enum.Enum):
    UNKNOWN = "unknown"  # settings or levels changed: look again
    MOVING = "moving"  # a fade, a gain off 1: the float path


_UNKNOWN, _MOVING = _Plan.UNKNOWN, _Plan.MOVING
_UNITY = 1.0 - 2.0**-16  # a limiter gain above this is 1 (within half a bit at full scale)


@dataclass(frozen=True, slots=True)
class _Steady:
    """Nothing moves: who is heard (``send``: a 0/1 column, None for all) and who hears."""

    send: npt.NDArray[np.float32] | None
    hear_off: npt.NDArray[np.bool_] | None


def _edge_interpolation(blocks: int, block_samples: int) -> npt.NDArray[np.float32]:
    """``edges @ this``: a gain given at ``blocks + 1`` edges, linear across each block."""
    weights = np.zeros((blocks + 1, blocks * block_samples), np.float32)
    frac = np.arange(block_samples) / block_samples
    for b in range(blocks):
        span = slice(b * block_samples, (b + 1) * block_samples)
        weights[b, span], weights[b + 1, span] = 1.0 - frac, frac
    return weights


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
        self._fade_step = min(1.0, FRAME_MS / max(1, fade_ms))
        self._ramp = np.arange(1, frame_samples + 1) / frame_samples
        self._plan: _Steady | _Plan = _UNKNOWN
        self._scratch: npt.NDArray[np.float32] = np.empty((0, frame_samples), np.float32)
        self._last_contribution: npt.NDArray[Any] = np.zeros((0, frame_samples))
        self._loud_energy = TALK_THRESHOLD_RMS**2 * frame_samples
        # The limiter: an envelope per row, its value at each block edge (state: where the
        # last frame ended), linear in between; it holds for whole frames after a reduction.
        self._limiting = False  # some row's envelope is below 1 or holding
        self._blocks = frame_samples // LIMITER_BLOCK_SAMPLES
        frame_ms = frame_samples * 1000 / rate_hz
        self._hold_frames = int(np.ceil(HOLD_MS / frame_ms))
        release = 1 - np.exp(-LIMITER_BLOCK_SAMPLES / rate_hz / (RELEASE_MS / 1000))
        self._decay = (1 - release) ** np.arange(1, self._blocks + 1)  # what is left to recover
        self._interpolate = _edge_interpolation(self._blocks, LIMITER_BLOCK_SAMPLES)
        # block b's edge may not exceed what blocks up to b + 1 need (the last: up to b)
        self._ahead = np.minimum(np.arange(1, self._blocks + 1), self._blocks - 1)

    # ---- membership and settings ---------------------------------------------------------

    @property
    def ids(self) -> tuple[str, ...]:
        """The participants in the order :meth:`mix` expects its rows (leaving ones included
        until their fade-out frame has been mixed)."""
        return tuple(self._ids)

    @property
    def talking(self) -> dict[str, bool]:
        """Whose input was above -40 dBFS in the last tick."""
        return dict(zip(self._ids, self.loud.tolist(), strict=True))

    @property
    def loud(self) -> npt.NDArray[np.bool_]:
        """:attr:`talking` as a row per participant, in the order of :attr:`ids`."""
        return np.asarray(self._cols["loud"], np.bool_)

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
        self._plan = _UNKNOWN

    def remove(self, pid: str) -> None:
        """Fade ``pid`` out over the next mix; it is gone from :attr:`ids` after that."""
        if pid in self._ids:
            self._cols["leaving"][self._ids.index(pid)] = True
            self._plan = _UNKNOWN

    def set_gain(
        self, pid: str, send_gain: float | None = None, hear_gain: float | None = None
    ) -> None:
        row = self._row(pid)
        if send_gain is not None:
            self._cols["send_gain"][row] = _gain(send_gain)
        if hear_gain is not None:
            self._cols["hear_gain"][row] = _gain(hear_gain)
        self._plan = _UNKNOWN

    def set_mute(self, pid: str, send: bool | None = None, hear: bool | None = None) -> None:
        row = self._row(pid)
        if send is not None:
            self._cols["mute_send"][row] = send
        if hear is not None:
            self._cols["mute_hear"][row] = hear
        self._plan = _UNKNOWN

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
        if self._plan is _UNKNOWN:
            self._plan = self._steady_plan()
        plan = self._plan
        x = frames.astype(np.float32)
        self._cols["loud"] = np.vecdot(x, x) > self._loud_energy
        steady = isinstance(plan, _Steady) and not self._announcements
        y: npt.NDArray[Any] = (
            self._sum_steady(x, cast(_Steady, plan)) if steady else self._sum_moving(frames)
        )
        size = np.abs(y)
        out: Pcm16Array
        if self._limiting or np.maximum.reduce(size, axis=None) > LIMIT_THRESHOLD:
            out = np.rint(self._limit(y, size)).astype(np.int16)
        elif steady:
            out = y.astype(np.int16)  # whole numbers already
        else:
            out = np.rint(y).astype(np.int16)
        if not steady:
            self._drop_gone()
        return out

    @property
    def last_mix(self) -> FloatArray:
        """Everyone's sum in the last tick (before each listener's N-1): what a recording of
        the bridge holds."""
        return np.asarray(self._last_contribution.sum(axis=0), np.float64)

    def _steady_plan(self) -> _Steady | _Plan:
        """The usual tick: every level where it is going (no fade, nobody leaving) and every
        gain that is on exactly 1: then the mix is sums of whole numbers (:meth:`_sum_steady`)."""
        cols = self._cols
        send_on = ~(cols["mute_send"] | cols["leaving"])
        hear_on = ~(cols["mute_hear"] | cols["leaving"])
        moving = not (
            np.array_equal(cols["send_level"], send_on)
            and np.array_equal(cols["hear_level"], hear_on)
        )
        if moving or (cols["send_gain"][send_on] != 1.0).any():
            return _MOVING
        if (cols["hear_gain"][hear_on] != 1.0).any():
            return _MOVING
        send = None if send_on.all() else send_on.astype(np.float32)[:, None]
        return _Steady(send, None if hear_on.all() else ~hear_on)

    def _sum_steady(self, x: npt.NDArray[np.float32], plan: _Steady) -> npt.NDArray[np.float32]:
        """N-1 of whole numbers in float32, exact (sums of up to 512 PCM16 samples stay below
        2**24), so q's input cannot be in q's output even by a rounding."""
        contribution = x if plan.send is None else x * plan.send
        self._last_contribution = contribution
        if len(x) == 2 and plan.send is None and plan.hear_off is None:
            return contribution[::-1]  # two: each hears the other, as it is
        y = self._scratch
        if y.shape != x.shape:
            y = self._scratch = np.empty(x.shape, np.float32)
        np.subtract(contribution.sum(axis=0), contribution, out=y)
        if plan.hear_off is not None:
            y[plan.hear_off] = 0.0
        return y

    def _sum_moving(self, frames: Pcm16Array) -> FloatArray:
        """A tick with a fade, a gain off 1 or an announcement: float64 on an exact grid."""
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
        self._last_contribution = contribution
        y = (total[None, :] - contribution) * self._gains(
            cols["hear_gain"], cols["hear_level"], hear_to
        )
        self._add_announcements(y)
        cols["send_level"], cols["hear_level"] = send_to, hear_to
        self._plan = _UNKNOWN  # levels moved: look again next tick
        return np.asarray(y, np.float64)

    def _drop_gone(self) -> None:
        cols = self._cols
        gone = cols["leaving"] & (cols["send_level"] == 0.0)
        if gone.any():
            cols.keep(~gone)
            self._ids = [pid for pid, g in zip(self._ids, gone, strict=True) if not g]
            self._plan = _UNKNOWN

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

    def _limit(self, y: npt.NDArray[Any], size: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Every row's envelope at once, blocks included (no loop over either); ``size`` is
        ``abs(y)``. (Ufuncs' own ``reduce`` rather than ``.max()``/``.any()``: a tick is a
        few dozen operations on small arrays, where numpy's Python wrappers cost as much.)"""
        cols = self._cols
        n = y.shape[0]
        peaks = np.maximum.reduce(size.reshape(n, self._blocks, LIMITER_BLOCK_SAMPLES), axis=2)
        need = LIMIT_THRESHOLD / np.maximum(peaks, LIMIT_THRESHOLD)  # 1: nothing to take off
        # The envelope at a block's end is never above what this block or the next needs, nor
        # above anything needed earlier in the frame (once it came down, it holds) ...
        ceiling = np.minimum.accumulate(need, axis=1)[:, self._ahead]
        # ... nor above where it would be by recovering (not at all while it holds).
        gain_now, hold = cols["limiter_gain"], cols["limiter_hold"]
        decay = np.where((hold > 0)[:, None], 1.0, self._decay[None, :])
        edges = np.empty((n, self._blocks + 1), np.float32)
        edges[:, 0] = gain_now
        np.minimum(1.0 - (1.0 - gain_now)[:, None] * decay, ceiling, out=edges[:, 1:])
        # up with the recovery, then down to the ceiling: it came down iff it ends below its top
        end = edges[:, -1].astype(np.float64)
        reduced = end < np.maximum.reduce(edges, axis=1)
        end[end > _UNITY] = 1.0  # recovered to within half a bit at full scale: done
        hold = np.where(reduced, self._hold_frames, np.maximum(hold - 1, 0))
        cols["limiter_gain"], cols["limiter_hold"] = end, hold
        self._limiting = bool(np.logical_or.reduce(end < 1.0) or np.logical_or.reduce(hold))
        out: npt.NDArray[Any] = y * (edges @ self._interpolate)
        # Past the first block every edge is at most what its block needs; in the first the
        # envelope starts where the last frame left it, and a sudden peak there overshoots.
        over = gain_now > need[:, 0]
        if np.logical_or.reduce(over):
            out[over, :LIMITER_BLOCK_SAMPLES] = soft_clip(out[over, :LIMITER_BLOCK_SAMPLES])
        return out


def soft_clip(y: FloatArray) -> FloatArray:
    """Identity up to :data:`LIMIT_THRESHOLD`; above it a tanh knee that never reaches full
    scale and has no corner (a hard clip's corner is what makes clipping sound harsh)."""
    size = np.abs(y)
    over = size > LIMIT_THRESHOLD
    if not over.any():
        return y
    room = FULL_SCALE - LIMIT_THRESHOLD
    out = y.copy()
    out[over] = np.sign(y[over]) * (
        LIMIT_THRESHOLD + room * np.tanh((size[over] - LIMIT_THRESHOLD) / room)
    )
    return out


def _gain(value: float) -> float:
    if not 0.0 <= value <= 4.0:
        raise ValueError(f"gain {value} outside 0..4")
    return float(value)
