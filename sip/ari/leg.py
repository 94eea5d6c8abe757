"""The leg of a call that Asterisk holds in our Stasis app: its audio is the ExternalMedia
AudioSocket (or chan_websocket) connection, its signalling is ARI.

A wrapper around that connection's leg, so the call session runs unchanged: audio, marks and
barge-in go to the socket; what only Asterisk can do (DTMF to the caller, transfer, a hangup
with a cause) goes to ARI through :class:`AriActions`, which returns at once (the media core
never waits on ARI). ARI also ends the leg: when the caller hangs up or leaves Stasis, the
pending read is cancelled and the call reads :class:`LegHangup` with Asterisk's cause; so
silence on the socket is not taken for a hangup.

**Keep-alive.** Asterisk's chan_audiosocket reads a frame header in a loop that polls until bytes
come, holding the channel's lock (res_audiosocket.c, ``ast_audiosocket_receive_frame_with_hangup``),
and Stasis can read our ExternalMedia channel when nothing is there: ``stasis_app_exec`` waits on
the channel, runs the queued ``addChannel`` command (which hands the channel to a bridge thread
that may take the frame that woke it) and then calls ``ast_read`` anyway. That read then waits
for our next byte with the channel locked, so the bridge cannot write the caller's audio to it,
and every later channel Asterisk allocates queues behind that lock. An echo agent (or any agent
that waits for the caller) sends nothing, so nothing ever came. :meth:`AriLeg.keep_alive` (the
AudioSocket transport only) therefore sends a whole frame of silence whenever the socket has
been quiet for :data:`KEEPALIVE_GAP_S`, from the claim until Asterisk's audio has arrived and
the bridge has been up for :data:`KEEPALIVE_TAIL_S`: a stuck read gets its frame within that gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import trio

from media.bridge_transfer import TransferOutcome
from media.leg import Leg, LegAudio, LegError, LegEvent, LegHangup

KEEPALIVE_GAP_S = 0.04
"""Silence goes out once nothing has been sent for this long: two 20 ms frames, so an agent's
paced audio (one frame per 20 ms) never has silence slipped between its frames."""
KEEPALIVE_FRAME_S = 0.02
KEEPALIVE_TAIL_S = 1.0
"""How long after the bridge is up (and Asterisk's audio has come) silence still covers a read
by a Stasis thread that was held up before reaching it."""


class AriActions(Protocol):
    """What the leg asks of the Stasis application (:class:`sip.ari.app.AriApp`)."""

    def send_dtmf(self, call_uuid: str, digits: str) -> None: ...

    async def transfer(self, call_uuid: str, target: str) -> TransferOutcome: ...

    def release(self, call_uuid: str, reason: str) -> None: ...

    def started(self, call_uuid: str) -> None: ...


@dataclass(slots=True)
class AriTransfer:
    target: str
    call_uuid: str
    actions: AriActions
    done: trio.Event = field(default_factory=trio.Event)
    outcome: TransferOutcome = field(default_factory=lambda: TransferOutcome("transferring"))

    async def run(self) -> None:
        try:
            self.outcome = await self.actions.transfer(self.call_uuid, self.target)
        finally:
            self.done.set()


class AriLeg:
    kind = "asterisk"
    self_paced = False

    def __init__(
        self,
        inner: Leg,
        call_uuid: str,
        actions: AriActions,
        bridged: trio.Event | None = None,
        bridge_wait_s: float = 10.0,
    ) -> None:
        self._inner = inner
        self.self_paced = inner.self_paced  # chan_websocket: Asterisk re-times what we send
        self._bridged = bridged
        self._bridge_wait_s = bridge_wait_s
        self.call_uuid = call_uuid
        self._actions = actions
        self._ended: str | None = None
        self._reported = False
        self._read_scope: trio.CancelScope | None = None
        self._started = False
        self._send_lock = trio.Lock()  # the agent's frames and the keep-alive's, whole
        self._last_sent = -math.inf  # when a frame last went out (Trio time)
        self._heard = False  # audio from Asterisk has arrived: its bridge writes to us
        self._bridge_ready = bridged
        self._keepalive_scope: trio.CancelScope | None = None
        self._closing = False

    @property
    def rate_hz(self) -> int:  # the AudioSocket leg learns it from the first frame
        return self._inner.rate_hz

    @rate_hz.setter
    def rate_hz(self, rate_hz: int) -> None:
        self._inner.rate_hz = rate_hz

    def end(self, reason: str) -> None:
        """Asterisk ended the caller's side: the next (or pending) read is a hangup."""
        if self._ended is None:
            self._ended = reason
        if self._read_scope is not None:
            self._read_scope.cancel()

    async def receive(self) -> LegEvent:
        if not self._started:  # the call is registered and its agent link is up
            self._started = True
            self._actions.started(self.call_uuid)
        if self._ended is None:
            with trio.CancelScope() as scope:
                self._read_scope = scope
                try:
                    return await self._read()
                finally:
                    self._read_scope = None
        if self._reported:
            await trio.sleep_forever()  # the call stops reading after the first hangup
        self._reported = True
        return LegHangup(self._ended or "asterisk ended the call")

    async def _read(self) -> LegEvent:
        """Silence is not a hangup here: a bridge passes no frames while the caller sends none
        (a muted phone, a caller on hold), and ARI reports the real hangup. A closed socket
        still ends the call at once."""
        while True:
            try:
                event = await self._inner.receive()
            except LegError as exc:
                if exc.reason != "idle_timeout":
                    raise
                continue
            if isinstance(event, LegAudio):
                self._heard = True
            return event

    async def send_audio(self, pcm16: bytes) -> None:
        if self._bridged is not None:
            # Asterisk connects our socket before its channel is in the caller's bridge, and
            # drops what arrives meanwhile: an agent that greets at once would lose its first
            # words. So the first frame waits (bounded) for the bridge.
            with trio.move_on_after(self._bridge_wait_s):
                await self._bridged.wait()
            self._bridged = None
        await self._send(pcm16)

    async def _send(self, pcm16: bytes) -> None:
        """One whole frame, never interleaved with another (the keep-alive's or the agent's):
        Asterisk reads a frame's payload for 5 ms at most and ends the channel after that."""
        try:
            self._send_lock.acquire_nowait()  # (no checkpoint when it is free, as is usual)
        except trio.WouldBlock:
            await self._send_lock.acquire()
        try:
            await self._inner.send_audio(pcm16)
            self._last_sent = trio.current_time()
        finally:
            self._send_lock.release()

    async def keep_alive(self) -> None:
        """Silence whenever the socket has been quiet for :data:`KEEPALIVE_GAP_S`, until
        Asterisk's audio has come and its bridge has been up for :data:`KEEPALIVE_TAIL_S`
        (see the module's note). Ends quietly with the leg."""
        bridge_up_at: float | None = None
        with trio.CancelScope() as scope:
            self._keepalive_scope = scope
            while not self._closing:
                now = trio.current_time()
                ready = self._bridge_ready
                if bridge_up_at is None and (ready is None or ready.is_set()):
                    bridge_up_at = now
                if (
                    self._heard
                    and bridge_up_at is not None
                    and now >= bridge_up_at + KEEPALIVE_TAIL_S
                ):
                    return
                due = self._last_sent + KEEPALIVE_GAP_S
                if now < due:
                    await trio.sleep_until(due)
                    continue
                silence = bytes(2 * round(self._inner.rate_hz * KEEPALIVE_FRAME_S))
                try:
                    await self._send(silence)
                except LegError:
                    return  # the socket is gone: the call's reader ends the call

    async def clear(self) -> None:
        await self._inner.clear()

    async def send_mark(self, name: str) -> None:
        await self._inner.send_mark(name)

    async def send_dtmf(self, digits: str) -> None:
        self._actions.send_dtmf(self.call_uuid, digits)

    def refer(self, target: str) -> AriTransfer:
        """A transfer by Asterisk; the call runs it (``run``) and waits on ``done``, as for a
        SIP REFER (:class:`sip.leg.ReferTransfer`), so the agent learns the outcome."""
        return AriTransfer(target, self.call_uuid, self._actions)

    async def hangup(self, reason: str) -> None:
        self._closing = True
        if self._keepalive_scope is not None:
            self._keepalive_scope.cancel()
        self._actions.release(self.call_uuid, reason)
        await self._inner.hangup(reason)
