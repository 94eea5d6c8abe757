"""The leg of a call that Asterisk holds in our Stasis app: its audio is the ExternalMedia
AudioSocket (or chan_websocket) connection, its signalling is ARI.

A wrapper around that connection's leg, so the call session runs unchanged: audio, marks and
barge-in go to the socket; what only Asterisk can do (DTMF to the caller, transfer, a hangup
with a cause) goes to ARI through :class:`AriActions`, which returns at once (the media core
never waits on ARI). ARI also ends the leg: when the caller hangs up or leaves Stasis, the
pending read is cancelled and the call reads :class:`LegHangup` with Asterisk's cause; so
silence on the socket is not taken for a hangup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import trio

from media.bridge_transfer import TransferOutcome
from media.leg import Leg, LegError, LegEvent, LegHangup


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
                return await self._inner.receive()
            except LegError as exc:
                if exc.reason != "idle_timeout":
                    raise

    async def send_audio(self, pcm16: bytes) -> None:
        if self._bridged is not None:
            # Asterisk connects our socket before its channel is in the caller's bridge, and
            # drops what arrives meanwhile: an agent that greets at once would lose its first
            # words. So the first frame waits (bounded) for the bridge.
            with trio.move_on_after(self._bridge_wait_s):
                await self._bridged.wait()
            self._bridged = None
        await self._inner.send_audio(pcm16)

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
        self._actions.release(self.call_uuid, reason)
        await self._inner.hangup(reason)
