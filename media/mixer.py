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


@dataclass(slots=True)
class _Slot:
    send_gain: float = 1.0
    hear_gain: float = 1.0
    mute_send: bool = False
    mute_hear: bool = False
    leaving: bool = False
    # where the fades stand (0 silent .. 1 full); a join starts at 0 and fades in
    send_level: float = 0.0
    hear_level: float = 0.0
    limiter_gain: float = 1.0
    limiter_hold: int = 0  # limiter blocks left before the envelope may recover


@dataclass(slots=True)
class _Tick:
    """Per-slot values of one tick, as arrays (rebuilt from the slots each tick: cheap)."""

    send_from: FloatArray
    send_to: FloatArray
    hear_from: FloatArray
    hear_to: FloatArray
    send_gain: FloatArray
    hear_gain: FloatArray
    limiter_gain: FloatArray
    limiter_hold: npt.NDArray[np.int64]


class Mixer:
    """Who is in the mix and how; :meth:`mix` turns one tick of inputs into outputs."""

    def __init__(
        self, frame_samples: int = FRAME_SAMPLES, fade_ms: int = FADE_MS, rate_hz: int = MIX_RATE_HZ
    ) -> None:
        if frame_samples % LIMITER_BLOCK_SAMPLES:
            raise ValueError(f"frame_samples must be a multiple of {LIMITER_BLOCK_SAMPLES}")
        self.frame_samples = frame_samples
        self.rate_hz = rate_hz
        self._slots: dict[str, _Slot] = {}
        self._announcements: list[_Announcement] = []
        self.talking: dict[str, bool] = {}  # input above -40 dBFS in the last tick
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
        return tuple(self._slots)

    def __contains__(self, pid: str) -> bool:
        slot = self._slots.get(pid)
        return slot is not None and not slot.leaving

    def add(self, pid: str, send_gain: float = 1.0, hear_gain: float = 1.0) -> None:
        """Fade ``pid`` in from the next mix (back in, from where it stands, if it was still
        fading out)."""
        old = self._slots.get(pid)
        if old is not None and not old.leaving:
            raise KeyError(f"{pid} is already in the mix")
        slot = _Slot(_gain(send_gain), _gain(hear_gain))
        if old is not None:
            slot.send_level, slot.hear_level = old.send_level, old.hear_level
            slot.limiter_gain, slot.limiter_hold = old.limiter_gain, old.limiter_hold
        self._slots[pid] = slot

    def remove(self, pid: str) -> None:
        """Fade ``pid`` out over the next mix; it is gone from :attr:`ids` after that."""
        slot = self._slots.get(pid)
        if slot is not None:
            slot.leaving = True

    def set_gain(
        self, pid: str, send_gain: float | None = None, hear_gain: float | None = None
    ) -> None:
        slot = self._slots[pid]
        if send_gain is not None:
            slot.send_gain = _gain(send_gain)
        if hear_gain is not None:
            slot.hear_gain = _gain(hear_gain)

    def set_mute(self, pid: str, send: bool | None = None, hear: bool | None = None) -> None:
        slot = self._slots[pid]
        if send is not None:
            slot.mute_send = send
        if hear is not None:
            slot.mute_hear = hear

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
        slots = list(self._slots.values())
        if frames.shape != (len(slots), self.frame_samples):
            raise ValueError(f"expected {(len(slots), self.frame_samples)}, got {frames.shape}")
        if not slots:
            return np.zeros((0, self.frame_samples), np.int16)
        x = frames.astype(np.float64)
        tick = self._tick_values(slots)
        send = tick.send_gain[:, None] * _ramps(tick.send_from, tick.send_to, self._ramp)
        contribution = x * send
        total = contribution.sum(axis=0)
        hear = tick.hear_gain[:, None] * _ramps(tick.hear_from, tick.hear_to, self._ramp)
        y = (total[None, :] - contribution) * hear
        self._add_announcements(y)
        y = self._limit(y, tick, slots)
        self._update_talking(x)
        self._finish_tick(slots, tick)
        return np.rint(y).astype(np.int16)

    def _tick_values(self, slots: list[_Slot]) -> _Tick:
        step = self._fade_step
        send_to = [
            _toward(s.send_level, 0.0 if s.mute_send or s.leaving else 1.0, step) for s in slots
        ]
        hear_to = [
            _toward(s.hear_level, 0.0 if s.mute_hear or s.leaving else 1.0, step) for s in slots
        ]
        return _Tick(
            send_from=np.array([s.send_level for s in slots]),
            send_to=np.array(send_to),
            hear_from=np.array([s.hear_level for s in slots]),
            hear_to=np.array(hear_to),
            send_gain=np.array([s.send_gain for s in slots]),
            hear_gain=np.array([s.hear_gain for s in slots]),
            limiter_gain=np.array([s.limiter_gain for s in slots]),
            limiter_hold=np.array([s.limiter_hold for s in slots], np.int64),
        )

    def _add_announcements(self, y: FloatArray) -> None:
        ids = self.ids
        for ann in self._announcements:
            chunk = ann.pcm[ann.pos : ann.pos + self.frame_samples]
            rows = [i for i, pid in enumerate(ids) if pid in ann.hearers]
            y[rows, : chunk.size] += chunk
            ann.pos += self.frame_samples
        self._announcements = [a for a in self._announcements if a.pos < a.pcm.size]

    def _limit(self, y: FloatArray, tick: _Tick, slots: list[_Slot]) -> FloatArray:
        blocks = self.frame_samples // LIMITER_BLOCK_SAMPLES
        shaped = y.reshape(len(slots), blocks, LIMITER_BLOCK_SAMPLES)
        peak = np.abs(shaped).max(axis=2)
        need = np.minimum(1.0, LIMIT_THRESHOLD / np.maximum(peak, 1e-9))
        # Envelope at each block boundary: never above what this block or the next needs;
        # after a reduction it holds, then recovers towards 1 at the release rate.
        edges = np.empty((len(slots), blocks + 1))
        edges[:, 0] = tick.limiter_gain
        hold = tick.limiter_hold
        for b in range(blocks):
            now = edges[:, b]
            target = np.minimum(need[:, b], need[:, b + 1] if b + 1 < blocks else 1.0)
            recovered = np.where(hold > 0, now, now + (1.0 - now) * self._release)
            reduce = target < now
            edges[:, b + 1] = np.where(reduce, target, np.minimum(target, recovered))
            hold = np.where(reduce, self._hold_blocks, np.maximum(hold - 1, 0))
        start, end = edges[:, :-1, None], edges[:, 1:, None]
        gain = start + (end - start) * self._block_ramp[None, None, :]
        out = (shaped * gain).reshape(len(slots), self.frame_samples)
        for slot, g, h in zip(slots, edges[:, -1], hold, strict=True):
            slot.limiter_gain, slot.limiter_hold = float(g), int(h)
        return soft_clip(out)

    def _update_talking(self, x: FloatArray) -> None:
        rms = np.sqrt((x * x).mean(axis=1))
        self.talking = {
            pid: bool(r > TALK_THRESHOLD_RMS) for pid, r in zip(self.ids, rms, strict=True)
        }

    def _finish_tick(self, slots: list[_Slot], tick: _Tick) -> None:
        for slot, send_to, hear_to in zip(slots, tick.send_to, tick.hear_to, strict=True):
            slot.send_level, slot.hear_level = float(send_to), float(hear_to)
        for pid in [p for p, s in self._slots.items() if s.leaving and s.send_level == 0.0]:
            del self._slots[pid]
            self.talking.pop(pid, None)


def soft_clip(y: FloatArray) -> FloatArray:
    """Identity up to :data:`LIMIT_THRESHOLD`; above it a tanh knee that never reaches full
    scale and has no corner (a hard clip's corner is what makes clipping sound harsh)."""
    over = np.abs(y) - LIMIT_THRESHOLD
    if not (over > 0).any():
        return y
    room = FULL_SCALE - LIMIT_THRESHOLD
    bent = np.sign(y) * (LIMIT_THRESHOLD + room * np.tanh(np.maximum(over, 0) / room))
    return np.where(over > 0, bent, y)


def _ramps(start: FloatArray, end: FloatArray, ramp: FloatArray) -> FloatArray:
    """Per row, a linear move from ``start`` (just before the frame) to ``end`` (its last
    sample): a constant row costs nothing extra to express and never steps."""
    return start[:, None] + (end - start)[:, None] * ramp[None, :]


def _toward(level: float, target: float, step: float) -> float:
    if level < target:
        return min(target, level + step)
    return max(target, level - step)


def _gain(value: float) -> float:
    if not 0.0 <= value <= 4.0:
        raise ValueError(f"gain {value} outside 0..4")
    return float(value)
