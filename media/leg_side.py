"""A call's leg side: the caller's audio in and out, whoever the call talks with.

Two tasks in the call's nursery: the leg reader (caller audio -> 16 kHz -> the current peer's
:meth:`~media.peer.AudioPeer.uplink`; key presses and played marks -> the peer) and the pacer
(playout buffer -> leg, one 20 ms frame per slot of the Trio clock). The peer queues audio for the
caller through the :class:`media.peer.Downlink` methods here, which never block. Resampling is
streaming and per direction; the playout buffer is bounded in milliseconds, and tighter while the
peer is live (a bridge): a live source fills it exactly as fast as it drains, so any backlog a
stall leaves would be latency for the rest of the call; past ``live_max_ms`` it is dropped.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, cast

import trio

from media.audio import FRAME_MS, LINK_RATE_HZ, pcm16_bytes_for_ms
from media.bridge_core import BacklogWatch
from media.dtmf_tones import dtmf_pcm16
from media.hooks import HangupCause, LegCannotDo
from media.leg import Leg, LegAudio, LegDtmf, LegError, LegEvent, LegHangup, LegMarkPlayed
from media.metrics import MediaMetrics
from media.pacing import PacingGrid
from media.peer import AudioPeer, NoPeer
from media.playout import PlayoutBuffer
from media.resample import StreamResampler
from media.tick import TICK_SLACK_S, Tick, current_readers, current_tick, enabled, open_batch

log = logging.getLogger(__name__)

FRAME_S = FRAME_MS / 1000
PACER_SLEW_S = 0.001  # how far one frame may pull the pacing grid earlier (gaps stay >= 19 ms)
# How far behind its slot a frame may be and still catch up (the frames behind it go out in the
# same burst); further behind, the grid restarts. 100 ms: five frames, within what a phone's or
# Asterisk's jitter buffer absorbs.
PACER_CATCHUP_S = 0.1
LIVE_PLAYOUT_MAX_MS = 120  # a bridge's audio queued for the caller, at most
# Audio the peer queues after this long without queueing any starts a new sentence (see
# wait_reply): longer than a live stream's gaps under load, shorter than a TTS starting late.
SENTENCE_GAP_S = 0.5
MAX_TURNS_KEPT = 100  # answers' latencies kept per call: its summary and end-of-call log stay small

EndCall = Callable[[HangupCause, str], None]
KeyPressed = Callable[[LegDtmf], Awaitable[None]]


@dataclass(slots=True)
class CallStats:
    frames_in: int = 0
    frames_out: int = 0
    uplink_dropped_ms: float = 0.0
    max_lateness_s: float = 0.0
    # each answer's latency: the caller's final transcript to the answer's first audio
    turn_latency_ms: list[int] = field(default_factory=list)

    def add_turn(self, latency_s: float) -> None:
        if len(self.turn_latency_ms) < MAX_TURNS_KEPT:
            self.turn_latency_ms.append(round(latency_s * 1000))


class NowaitAudio(Protocol):
    """A leg that can send a frame without a scheduling round (AudioSocket): what lets its
    frames be paced by the process's shared :class:`media.tick.Tick`."""

    def send_audio_nowait(self, pcm16: bytes) -> bool:
        """Send one frame as far as the kernel takes it now: False when part of it waits for
        :meth:`flush_audio`. Raises :class:`media.leg.LegError`."""

    async def flush_audio(self) -> None:
        """Send what :meth:`send_audio_nowait` left, under the leg's send deadline."""


class PolledLeg(Protocol):
    """A leg whose socket the process's shared reader (:class:`media.tick.Readers`) reads."""

    idle_timeout_s: float

    def fileno(self) -> int: ...

    def read_nowait(self) -> list[LegEvent]:
        """Every event its socket holds now, without waiting: ``[]`` if none; raises
        :class:`media.leg.LegError`."""


def _implements(leg: Leg, *methods: str) -> bool:
    """``leg``'s own class has ``methods``: a wrapper that hands unknown attributes on to the
    leg inside it (the recorder) does not, since what it wraps must go through it."""
    return all(callable(getattr(type(leg), name, None)) for name in methods)


class LegSide:
    """Implements :class:`media.peer.Downlink` for the call's current peer."""

    def __init__(
        self,
        leg: Leg,
        call_id: str,
        playout_max_ms: int,
        metrics: MediaMetrics,
        end: EndCall,
        key_pressed: KeyPressed | None = None,
        hold_s: float = 0.0,
    ) -> None:
        self.leg = leg
        self.call_id = call_id
        self.stats = CallStats()
        self.peer: AudioPeer = NoPeer()
        self.goodbye: str | None = None  # set: end the call once the playout has drained
        self._metrics = metrics
        self._end = end
        self._key_pressed = key_pressed
        self._playout_max_ms = playout_max_ms
        self._live = False
        self._backlog = BacklogWatch()  # a live stream's audio that stood queued (see play)
        self._up = StreamResampler(leg.rate_hz, LINK_RATE_HZ)
        self._down = StreamResampler(LINK_RATE_HZ, leg.rate_hz)
        self._playout = PlayoutBuffer(leg.rate_hz, playout_max_ms)
        self._audio_ready = trio.lowlevel.ParkingLot()
        self._drained = trio.lowlevel.ParkingLot()
        self._queued_at = -float("inf")  # when the peer last queued audio (Trio time)
        self._sentence_at = -float("inf")  # when its latest sentence began (SENTENCE_GAP_S)
        # pacing on the shared tick (see pacer()); None: the pacer task sends every frame
        self._tick: Tick | None = None
        self._nowait: NowaitAudio | None = None  # the leg, when paced on the tick
        self._grid = PacingGrid(FRAME_S, PACER_CATCHUP_S, PACER_SLEW_S, hold_s)
        self._slot_asked: float | None = None  # the slot the tick will wake us for
        self._ran_dry = False
        self._dry_since = 0.0
        self._held_tail = False
        self._paced_out = False  # the call ended from the pacing side: send nothing more
        self._blocked = False  # a frame's rest waits for flush_audio in the pacer task
        self._marks_due: deque[str] = deque()
        self._slow_path = trio.lowlevel.ParkingLot()  # the pacer task: a wait, a mark
        self._frames_out = metrics.frames_out.labels(leg.kind)
        self._frames_in = metrics.frames_in.labels(leg.kind)

    def attach(self, peer: AudioPeer, live: bool = False) -> None:
        """From the next frame on, talk with ``peer`` (``live``: a bridge, not a burst source)."""
        self.peer = peer
        self._live = live
        self._backlog.reset()

    def end_after_playout(self, reason: str) -> None:
        self.goodbye = reason
        self._audio_ready.unpark_all()
        self._pump()

    # ---- caller -> peer -------------------------------------------------------------------

    async def reader(self) -> None:
        """Until the caller hangs up or the leg fails. A :class:`PolledLeg` is read by the
        process's shared reader (its audio handed on there, at once); this task then takes
        only the other events, in order, and watches the idle deadline."""
        leg = self.leg
        if enabled() and _implements(leg, "fileno", "read_nowait"):
            await self._read_polled(cast(PolledLeg, leg))
            return
        while True:
            try:
                event = await leg.receive()
            except LegError as exc:
                self._leg_ended(exc)
                return
            if not await self._heard(event):
                return

    async def _heard(self, event: LegEvent) -> bool:
        """One event from the caller; False once the call is over."""
        if isinstance(event, LegAudio):
            self._frames_in.inc()
            self.stats.frames_in += 1
            self._to_uplink(event.pcm16)
        elif isinstance(event, LegDtmf):
            if self._key_pressed is not None:  # awaited inline: in order, and bounded
                await self._key_pressed(event)
            await self.peer.leg_event(event)
        elif isinstance(event, LegMarkPlayed):
            await self.peer.leg_event(event)
        elif isinstance(event, LegHangup):
            self._end("caller", event.reason)
            return False
        return True

    def _leg_ended(self, exc: LegError) -> None:
        self._metrics.leg_errors.labels(self.leg.kind, exc.reason).inc()
        cause: HangupCause = "caller" if exc.reason == "closed" else "error"
        log.info("leg ended", extra={"call_id": self.call_id, "reason": str(exc)})
        self._end(cause, f"leg {exc.reason}")

    async def _read_polled(self, leg: PolledLeg) -> None:
        readers, fd = current_readers(), leg.fileno()
        inbox: deque[LegEvent | LegError] = deque()  # what this task handles, in order
        woken = trio.lowlevel.ParkingLot()
        heard_at = trio.current_time()

        def on_readable() -> None:
            nonlocal heard_at
            try:
                events: list[LegEvent | LegError] = [*leg.read_nowait()]
            except LegError as exc:
                events = [exc]
            if not events:
                return
            heard_at = trio.current_time()
            for event in events:
                if not inbox and isinstance(event, LegAudio):
                    self._frames_in.inc()
                    self.stats.frames_in += 1
                    self._to_uplink(event.pcm16)
                else:
                    inbox.append(event)
            if inbox:
                woken.unpark_all()
                if isinstance(inbox[-1], LegError | LegHangup):
                    readers.remove(fd)  # nothing more to read

        readers.add(fd, on_readable)
        try:
            on_readable()  # what came with the handshake
            while True:
                if not inbox:
                    with trio.move_on_at(heard_at + leg.idle_timeout_s):
                        await woken.park()
                    if not inbox and trio.current_time() >= heard_at + leg.idle_timeout_s:
                        detail = f"nothing from the caller for {leg.idle_timeout_s} s"
                        inbox.append(LegError("idle_timeout", detail))
                    continue
                event = inbox.popleft()
                if isinstance(event, LegError):
                    self._leg_ended(event)
                    return
                if not await self._heard(event):
                    return
        finally:
            readers.remove(fd)

    def _to_uplink(self, pcm16: bytes) -> None:
        if self._up.in_rate_hz != self.leg.rate_hz:  # the leg learnt its real rate
            self._retune(self.leg.rate_hz)
        batch = open_batch()  # (the shared reader's wake-up: with every call it serves)
        if batch is None:
            self.peer.uplink(self._up.process(pcm16))
        else:
            batch.add(self._up, pcm16, self._uplink_resampled)

    def _uplink_resampled(self, pcm16: bytes) -> None:
        self.peer.uplink(pcm16)

    def _retune(self, rate_hz: int) -> None:
        self._up = StreamResampler(rate_hz, LINK_RATE_HZ)
        self._down = StreamResampler(LINK_RATE_HZ, rate_hz)
        self._playout = PlayoutBuffer(rate_hz, self._playout_max_ms)

    # ---- peer -> caller (Downlink) --------------------------------------------------------

    def play(self, pcm16: bytes, rate_hz: int = LINK_RATE_HZ) -> None:
        if self.goodbye is not None:
            return  # the agent already said goodbye
        if rate_hz != self._down.in_rate_hz:
            self._down = StreamResampler(rate_hz, self.leg.rate_hz)
        batch = open_batch()  # (the agent link reader's wake-up: with every call it serves)
        if batch is None:
            self._play_resampled(self._down.process(pcm16))
        else:
            batch.add(self._down, pcm16, self._play_resampled)

    def _play_resampled(self, pcm16_leg: bytes) -> None:
        if self._live:
            self._trim_live_backlog()
        if self._live and len(self._playout) >= pcm16_bytes_for_ms(
            LIVE_PLAYOUT_MAX_MS, self._playout.rate_hz
        ):
            dropped_ms, _ = self._playout.flush()  # the leg stalled: drop the backlog, not later
            self._metrics.drops.labels("playout").inc(dropped_ms)
        self._queue_playout(pcm16_leg)

    def _trim_live_backlog(self) -> None:
        """A live stream (a bridge's mix) fills the playout exactly as fast as it drains, so
        audio still queued at every frame through a window (a stall longer than the pacer's
        catch-up) would be latency for the rest of the call: it goes, at once."""
        if self._playout.overlaying():
            return  # tones over the stream: it is consumed underneath at its own pace
        standing = self._backlog.look(len(self._playout) // self._playout.frame_bytes)
        for _ in range(standing):
            self._playout.pop_frame()
        if standing:
            self._metrics.drops.labels("playout").inc(standing * FRAME_MS)

    def _queue_playout(self, pcm16: bytes) -> None:
        now = trio.current_time()
        if now - self._queued_at >= SENTENCE_GAP_S:
            self._sentence_at = now
        self._queued_at = now
        dropped_ms = self._playout.push(pcm16)
        if dropped_ms:
            self._metrics.drops.labels("playout").inc(dropped_ms)
        self._audio_ready.unpark_all()
        self._pump()

    def add_mark(self, name: str) -> None:
        self._playout.add_mark(name)

    async def interrupt(self) -> list[str]:
        dropped_ms, marks = self._playout.flush()
        self._down.reset()
        self._metrics.flushes.inc()
        log.debug("barge-in", extra={"call_id": self.call_id, "dropped_ms": dropped_ms})
        await self.leg.clear()
        return marks

    async def wait_quiet(self, quiet_s: float, max_s: float) -> None:
        """Until the caller has heard everything queued and nothing more came for ``quiet_s``
        (an agent's last sentence before a transfer), ``max_s`` at most."""
        with trio.move_on_after(max_s):
            while True:
                if self._playout.pending():
                    await self._drained.park()
                with trio.move_on_after(quiet_s):
                    await self._audio_ready.park()
                    continue  # more audio came: wait for it to play too
                return

    async def wait_reply(self, start_s: float, quiet_s: float, max_s: float) -> None:
        """Like :meth:`wait_quiet`, but first give the agent ``start_s`` to start a sentence
        from now on (its reply to a tool's result, or the sentence it said with the tool call,
        is still in its TTS). What it was already saying does not count as that sentence, nor
        does more of it coming on (its earlier reply still playing, or a stream without a
        pause of :data:`SENTENCE_GAP_S`): that sentence may start after the earlier one has
        been quiet longer than ``quiet_s``, and waiting only for quiet would cut it. What it
        was saying is heard too; with no new sentence, the wait ends ``start_s`` from now at
        the earliest (then once quiet)."""
        asked = trio.current_time()
        with trio.move_on_after(max_s):
            with trio.move_on_after(start_s):
                while self._sentence_at < asked:
                    await self._audio_ready.park()
            await self.wait_quiet(quiet_s, max_s)

    async def send_dtmf(self, digits: str) -> None:
        try:
            await self.leg.send_dtmf(digits)
        except LegCannotDo:
            # In-band tones over the call's audio at its current position, not queued behind it
            # (which would delay everything after them for the rest of the call).
            dropped_ms = self._playout.overlay(dtmf_pcm16(digits, self._playout.rate_hz))
            if dropped_ms:
                self._metrics.drops.labels("playout").inc(dropped_ms)
            self._audio_ready.unpark_all()
            self._pump()

    # ---- pacing ---------------------------------------------------------------------------

    async def pacer(self) -> None:
        """Send one frame per 20 ms slot of a :class:`media.pacing.PacingGrid`: frames whose
        slot passed during a short delay catch up at once, a stream that stopped restarts the
        grid, a live stream that runs early pulls it earlier (the rules are in that module).

        A leg that sends without waiting (:class:`NowaitAudio`) and is not self-paced is paced
        on the process's shared tick (:mod:`media.tick`) by :meth:`_pump`, with the same grid
        and rules; this task then only waits for what must wait (a full socket, marks)."""
        leg = self.leg
        if enabled() and _implements(leg, "send_audio_nowait") and not leg.self_paced:
            self._tick, self._nowait = current_tick(), cast(NowaitAudio, leg)
            await self._paced_on_tick(self._nowait)
        else:
            await self._paced_by_task()

    async def _paced_by_task(self) -> None:
        grid = PacingGrid(FRAME_S, PACER_CATCHUP_S, PACER_SLEW_S, self._grid.hold_s)
        held_tail = False
        ran_dry = False
        frames_out = self._metrics.frames_out.labels(self.leg.kind)
        lateness = self._metrics.lateness
        while True:
            if not self._playout.pending():
                self._drained.unpark_all()
                if self.goodbye is not None:
                    self._end("agent", self.goodbye)
                    return
                await self._wait_audio()
                ran_dry = True
                continue
            now = trio.current_time()
            due = grid.slot(now, ran_dry)
            # A self-paced leg's far end times playout itself, but tones over a live stream
            # must take the stream's place frame by frame: they are paced there too.
            if now < due and (not self.leg.self_paced or self._playout.overlaying()):
                # (A slot already past needs no sleep: Trio wakes a sleeper by cancelling it,
                # the costliest wake-up it has. Sends the kernel takes at once do not
                # checkpoint, so a catch-up burst runs at most PACER_CATCHUP_S / FRAME_S + 1
                # frames before this sleep, the loop's checkpoint, comes round again.)
                await trio.sleep_until(due)
            ran_dry = False
            frame = self._playout.pop_frame(pad=held_tail or self.goodbye is not None)
            if frame is None:  # a short tail: give the agent one slot to complete it
                held_tail = True
                grid.advance()
                continue
            held_tail = False
            # (A self-paced leg's frames leave ahead of their slots: early is not late.)
            late_s = max(0.0, trio.current_time() - due)
            lateness.observe(late_s)
            self.stats.max_lateness_s = max(self.stats.max_lateness_s, late_s)
            await self._send_leg(frame)
            frames_out.inc()
            self.stats.frames_out += 1
            for name in self._playout.passed_marks():
                await self.leg.send_mark(name)
                await self.peer.leg_event(LegMarkPlayed(name))
            grid.advance()

    def _pump(self, early_s: float = 0.0) -> None:
        """Send every frame whose slot has come (or comes within ``early_s``: the tick's slack);
        ask the tick for the next one's slot. Runs in whichever task queued audio, or in the
        tick; never waits (see :meth:`pacer`)."""
        if self._tick is None or self._blocked or self._paced_out:
            return  # (not on the tick; a frame waits in the pacer task; the call is over)
        now = trio.current_time()
        while True:
            if not self._playout.pending():
                self._run_dry(now)
                return
            due = self._grid.slot(now, self._ran_dry)
            self._ran_dry = False
            if due > now + early_s:
                if self._slot_asked != due:
                    self._slot_asked = due
                    self._tick.at(due, self)
                return
            if not self._send_due(now, due):
                return

    def _run_dry(self, now: float) -> None:
        self._drained.unpark_all()
        if self.goodbye is not None:
            self._paced_out = True
            self._end("agent", self.goodbye)
            return
        if not self._ran_dry:
            self._ran_dry, self._dry_since = True, now
        if self._playout.owes():  # audio owed to tones is dropped if it comes soon, not later
            if now >= self._dry_since + PACER_CATCHUP_S:
                self._playout.forgive()
            elif self._slot_asked is None:
                self._slot_asked = self._dry_since + PACER_CATCHUP_S
                assert self._tick is not None
                self._tick.at(self._slot_asked, self)

    def _send_due(self, now: float, due: float) -> bool:
        """The frame at hand, its slot come: False once sending must stop for now."""
        frame = self._playout.pop_frame(pad=self._held_tail or self.goodbye is not None)
        if frame is None:  # a short tail: give the agent one slot to complete it
            self._held_tail = True
            self._grid.advance()
            return True
        self._held_tail = False
        late_s = max(0.0, now - due)
        self._metrics.lateness.observe(late_s)
        self.stats.max_lateness_s = max(self.stats.max_lateness_s, late_s)
        self._grid.advance()
        assert self._nowait is not None
        try:
            sent = self._nowait.send_audio_nowait(frame)
        except LegError as exc:
            self._leg_failed(exc)
            return False
        self._frames_out.inc()
        self.stats.frames_out += 1
        self._marks_due.extend(self._playout.passed_marks())
        if not sent or self._marks_due:
            self._blocked = not sent
            self._slow_path.unpark_all()
        return sent

    def on_tick(self, slot: float) -> None:
        if slot == self._slot_asked:
            self._slot_asked = None
            self._pump(TICK_SLACK_S)

    async def _paced_on_tick(self, leg: NowaitAudio) -> None:
        self._pump()  # audio queued before the pacer started
        while True:
            if not self._blocked and not self._marks_due:  # (a _pump of this task's own)
                await self._slow_path.park()
            if self._blocked:
                try:
                    await leg.flush_audio()
                except LegError as exc:
                    self._leg_failed(exc)
                    await trio.sleep_forever()  # cancelled by _end
                self._blocked = False
            while self._marks_due:
                name = self._marks_due.popleft()
                await self.leg.send_mark(name)
                await self.peer.leg_event(LegMarkPlayed(name))
            self._pump()

    def _leg_failed(self, exc: LegError) -> None:
        self._paced_out = True
        self._metrics.leg_errors.labels(self.leg.kind, exc.reason).inc()
        self._end("caller" if exc.reason == "closed" else "error", f"leg {exc.reason}")

    async def _wait_audio(self) -> None:
        """Until audio is queued. Audio owed to tones that played over it (see
        :mod:`media.playout`) is dropped if it comes within the catch-up window, not later."""
        if self._playout.owes():
            with trio.move_on_after(PACER_CATCHUP_S):
                await self._audio_ready.park()
                return
            self._playout.forgive()
        await self._audio_ready.park()

    async def _send_leg(self, frame: bytes) -> None:
        try:
            await self.leg.send_audio(frame)
        except LegError as exc:
            self._leg_failed(exc)
            await trio.sleep_forever()  # cancelled by _end
