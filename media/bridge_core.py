"""A bridge's participants and one tick of their audio: pure, no clock (the Trio clock is
:mod:`media.bridge`).

Each participant is a :class:`BridgePort`, the call's :class:`media.peer.AudioPeer` while it is
in the bridge: caller frames go into a queue bounded in milliseconds (past it the oldest frame is
dropped and counted, so a leg whose clock runs fast cannot build up latency), and its mix comes
out through ``deliver``, a non-blocking hand-over into the call's playout. :meth:`BridgeCore.tick`
takes one frame from every port (silence from a port with none: a stalled leg is heard as
silence and holds nobody up), mixes them (:class:`media.mixer.Mixer`) and delivers. Ports are
plain values with no task of their own, so one tick could later drive every call of a process.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from media.audio import FRAME_MS, pcm16_bytes_per_frame
from media.leg import LegDtmf
from media.mixer import ENTRY_TONE, EXIT_TONE, FRAME_SAMPLES, MIX_RATE_HZ, Mixer, soft_clip
from media.peer import PeerEvent, PeerKind

FRAME_BYTES = pcm16_bytes_per_frame(MIX_RATE_HZ)
PORT_QUEUE_MS = 100  # five frames: a leg's jitter, not a backlog
# 200 ms: a backlog that stood through a whole window is trimmed at its end. Longer than any
# leg's packet (ptime up to 200 ms: a queue that a burst fills empties within the window).
DRIFT_WINDOW_TICKS = 10
# A frame taken less than this after it came is racing its tick: a little jitter and it misses
# it. With a clock, a trim keeps such a port one frame behind instead (a jitter buffer).
TRIM_MARGIN_S = 0.005
TALK_START_TICKS = 2  # 40 ms above the threshold: talking
TALK_STOP_TICKS = 25  # 500 ms below it: stopped (a pause between words is not an event)

Deliver = Callable[[bytes, int], None]
Clock = Callable[[], float]
_SILENCE = bytes(FRAME_BYTES)


class BridgeFull(Exception):
    """The bridge has its maximum of participants."""


class BridgeEnded(Exception):
    """The bridge is over; nobody can join it."""


@dataclass(frozen=True, slots=True)
class Talking:
    """A participant started (``talking``) or stopped talking."""

    participant_id: str
    talking: bool


@dataclass(frozen=True, slots=True)
class KeyPressed:
    participant_id: str
    digit: str


@dataclass(frozen=True, slots=True)
class Left:
    """A participant left (taken out, or its call ended): its owner updates its record."""

    participant_id: str


BridgeEvent = Talking | KeyPressed | Left


@dataclass(frozen=True, slots=True)
class _Settings:
    mute_send: bool
    mute_hear: bool
    send_gain: float
    hear_gain: float


class BacklogWatch:
    """A live stream's standing backlog: what was queued at every look over a window.

    Jitter empties a queue now and then; a backlog never does (a fast clock, a late frame, a
    stall it never caught up from). :meth:`look` takes the queue's depth (in frames, before
    taking or adding one) once per frame and, at the end of each window, answers how many
    frames stood through all of it: those can go, at once (one cut instead of one per window).
    An empty queue starts the window afresh."""

    def __init__(self, window: int = DRIFT_WINDOW_TICKS) -> None:
        self.window = window
        self._looks = 0
        self._least = 0

    def look(self, depth: int) -> int:
        if depth == 0:
            self._looks = 0
            return 0
        self._least = depth if self._looks == 0 else min(self._least, depth)
        self._looks += 1
        if self._looks < self.window:
            return 0
        self._looks = 0
        return self._least

    def reset(self) -> None:
        self._looks = 0


class BridgePort:
    """One participant's end of the bridge."""

    kind: PeerKind = "bridge"

    def __init__(
        self,
        participant_id: str,
        deliver: Deliver,
        queue_ms: int = PORT_QUEUE_MS,
        live: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.participant_id = participant_id
        self.deliver = deliver
        self.dropped_ms = 0.0
        self.silent_ticks = 0  # ticks that found nothing queued (a stalled leg, or a late one)
        self.drift_drops = 0  # frames dropped because the leg's clock runs ahead of the tick
        self._frames: deque[bytes] = deque()
        self._clock = clock  # set: each frame's arrival is kept (``_arrived``, same order)
        self._arrived: deque[float] = deque()
        self._max_frames = max(1, queue_ms // FRAME_MS)
        # A live leg's clock is not the bridge's: one that runs fast leaves a frame waiting at
        # every tick, and then two; a late frame leaves one for good. Without a trim that is
        # latency up to the bound. (Not for an agent's speech, which comes in bursts on purpose.)
        self._live = live
        self._backlog = BacklogWatch()
        self._partial = b""
        self._events: list[BridgeEvent] = []

    @property
    def queued_frames(self) -> int:
        return len(self._frames)

    def uplink(self, pcm16: bytes) -> None:
        # A resampler's output may straddle frames (44.1 kHz legs): re-cut into 20 ms frames.
        data = self._partial + pcm16 if self._partial else pcm16
        whole = len(data) - len(data) % FRAME_BYTES
        for i in range(0, whole, FRAME_BYTES):
            self._frames.append(data[i : i + FRAME_BYTES])
        if self._clock is not None and whole:
            now = self._clock()
            self._arrived.extend(now for _ in range(whole // FRAME_BYTES))
        self._partial = data[whole:]
        while len(self._frames) > self._max_frames:
            self._pop()
            self.dropped_ms += FRAME_MS

    def _pop(self) -> bytes:
        if self._arrived:
            self._arrived.popleft()
        return self._frames.popleft()

    async def leg_event(self, event: PeerEvent) -> None:
        if isinstance(event, LegDtmf):
            self._events.append(KeyPressed(self.participant_id, event.digit))

    def clear(self) -> float:
        """Drop what is queued (an agent's barge-in); returns the milliseconds dropped."""
        dropped_ms = len(self._frames) * FRAME_MS
        self._frames.clear()
        self._arrived.clear()
        self._partial = b""
        return float(dropped_ms)

    def take(self) -> bytes | None:
        if self._live:
            self._trim_drift()
        if self._frames:
            return self._pop()
        self.silent_ticks += 1
        return None

    def _trim_drift(self) -> None:
        """Frames that waited behind the one at hand through a whole window are a backlog (a
        clock that runs fast, or a late frame: the tick played silence in its place, and the
        frames behind it would stay that much late for good): they go."""
        drop = self._backlog.look(len(self._frames)) - 1
        if self._clock is not None and drop > 0:  # keep the frame at hand clear of its tick
            now = self._clock()
            while drop > 0 and now - self._arrived[drop] < TRIM_MARGIN_S:
                drop -= 1
        for _ in range(drop):
            self._pop()
            self.dropped_ms += FRAME_MS
            self.drift_drops += 1

    @property
    def has_events(self) -> bool:
        return bool(self._events)

    def take_events(self) -> list[BridgeEvent]:
        events, self._events = self._events, []
        return events


class BridgeCore:
    """Who is in, and :meth:`tick`: one 20 ms frame of everyone's audio, mixed and delivered."""

    def __init__(
        self, tones: bool = True, max_participants: int | None = None, clock: Clock | None = None
    ) -> None:
        self.tones = tones
        self.clock = clock  # given to every port: see :data:`TRIM_MARGIN_S`
        self.max_participants = max_participants
        self.mixer = Mixer()
        self.ended = False
        self.ports: dict[str, BridgePort] = {}
        self._leaving: dict[str, BridgePort] = {}  # fading out: their input is mixed once more
        self._talk_run: dict[str, int] = {}  # consecutive ticks on the other side of the threshold
        self.talking: set[str] = set()
        self._presets: dict[str, _Settings] = {}  # for participants on their way in
        self.on_mix: Callable[[bytes], None] | None = None  # each tick's whole mix (recording)

    def check_room(self) -> None:
        """Raises :class:`BridgeEnded` or :class:`BridgeFull` where a join would."""
        if self.ended:
            raise BridgeEnded("the bridge has ended")
        if self.max_participants is not None and len(self.ports) >= self.max_participants:
            raise BridgeFull(f"the bridge has its maximum of {self.max_participants}")

    def join(
        self,
        participant_id: str,
        deliver: Deliver,
        queue_ms: int = PORT_QUEUE_MS,
        live: bool = True,
    ) -> BridgePort:
        self.check_room()
        if participant_id in self.ports:
            raise KeyError(f"{participant_id} is already in the bridge")
        self._leaving.pop(participant_id, None)  # back before its fade-out: fades in again
        port = BridgePort(participant_id, deliver, queue_ms, live, self.clock)
        if self.tones:
            self.mixer.announce(ENTRY_TONE, self.ports)
        self.mixer.add(participant_id)
        self.ports[participant_id] = port
        preset = self._presets.pop(participant_id, None)
        if preset is not None:
            self._apply(participant_id, preset)
        return port

    def configure(
        self,
        participant_id: str,
        mute_send: bool,
        mute_hear: bool,
        send_gain: float,
        hear_gain: float,
    ) -> None:
        """Mutes and gains of ``participant_id``: at once if it is in, else when it joins."""
        settings = _Settings(mute_send, mute_hear, send_gain, hear_gain)
        if participant_id in self.ports:
            self._apply(participant_id, settings)
        else:
            self._presets[participant_id] = settings

    def _apply(self, participant_id: str, settings: _Settings) -> None:
        self.mixer.set_mute(participant_id, settings.mute_send, settings.mute_hear)
        self.mixer.set_gain(participant_id, settings.send_gain, settings.hear_gain)

    def leave(self, participant_id: str) -> BridgePort | None:
        self._presets.pop(participant_id, None)
        port = self.ports.pop(participant_id, None)
        if port is None:
            return None
        self.mixer.remove(participant_id)
        self._leaving[participant_id] = port
        self._talk_run.pop(participant_id, None)
        self.talking.discard(participant_id)
        if self.tones:
            self.mixer.announce(EXIT_TONE, self.ports)
        return port

    def tick(self) -> list[BridgeEvent]:
        ids = self.mixer.ids
        if not ids:
            return []
        frames: list[bytes] = []
        events: list[BridgeEvent] = []
        for pid in ids:
            port = self.ports.get(pid) or self._leaving[pid]
            frame = port.take()
            frames.append(_SILENCE if frame is None else frame)
            if port.has_events:
                events += port.take_events()
        rows = np.frombuffer(b"".join(frames), "<i2").reshape(len(ids), FRAME_SAMPLES)
        out = self.mixer.mix(rows)
        if self.on_mix is not None:
            self.on_mix(np.rint(soft_clip(self.mixer.last_mix)).astype("<i2").tobytes())
        mixed = out.astype("<i2", copy=False).tobytes()
        for i, pid in enumerate(ids):
            listener = self.ports.get(pid)
            if listener is not None:
                listener.deliver(mixed[i * FRAME_BYTES : (i + 1) * FRAME_BYTES], MIX_RATE_HZ)
        if self._leaving:
            for pid in [p for p in self._leaving if p not in self.mixer.ids]:
                del self._leaving[pid]
        return events + self._talking_changes()

    def _talking_changes(self) -> list[BridgeEvent]:
        changes: list[BridgeEvent] = []
        for pid, loud in zip(self.mixer.ids, self.mixer.loud.tolist(), strict=True):
            now_talking = pid in self.talking
            if loud == now_talking and not self._talk_run.get(pid):
                continue  # the usual tick: nothing changes
            if pid not in self.ports:
                continue
            run = self._talk_run.get(pid, 0) + 1 if loud != now_talking else 0
            self._talk_run[pid] = run
            if run >= (TALK_STOP_TICKS if now_talking else TALK_START_TICKS):
                self._talk_run[pid] = 0
                (self.talking.discard if now_talking else self.talking.add)(pid)
                changes.append(Talking(pid, not now_talking))
        return changes
