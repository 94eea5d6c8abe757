"""The message socket the WebSocket legs run over, and an in-memory pair of them.

Twilio media streams, chan_websocket and the browser leg all ride a WebSocket, but who owns it
differs: Quart-Trio's ``websocket`` object in the control plane, a ``trio-websocket``
connection when we dial Asterisk, an in-memory pair in tests. Legs see only this Protocol.

The per-frame path (a leg on its end of a :func:`memory_socket_pair`, 50 messages a second per
direction per call) takes a message that is already waiting, or hands one over to a pair with
room, without a cancel scope or a scheduling round: :func:`receive_within` and
:func:`send_within` set up their deadline only when they must wait, as :mod:`media.fastio` does
for the AudioSocket leg. A deadline per message (``fail_after``: a generator context manager
around a cancel scope) cost the media-streams leg more than its JSON and base64 together.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Protocol, TypeVar

import trio

from media.leg import LegError

T = TypeVar("T")
_End = TypeVar("_End", bound="MemoryMessageSocket")

NOWAIT_STREAK = 8
"""Messages one end takes or gives without waiting before it must wait once anyway (a
scheduling round): a leg that keeps finding messages cannot hold the loop from other calls."""

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011


class MessageSocketClosed(Exception):
    """The peer closed the socket (or it broke); ``code`` is the WebSocket close code."""

    def __init__(self, code: int = CLOSE_GOING_AWAY, reason: str = "") -> None:
        super().__init__(f"closed {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class MessageSocket(Protocol):
    """One WebSocket: whole messages, text as ``str`` and binary as ``bytes``."""

    async def receive(self) -> str | bytes:
        """Next message; raises :class:`MessageSocketClosed` once the peer has closed."""

    async def send(self, message: str | bytes) -> None:
        """Send one message; may block while the peer does not read; raises
        :class:`MessageSocketClosed` if the socket is closed."""

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close; idempotent."""


class MemoryMessageSocket:
    """One end of an in-memory WebSocket (tests, benchmarks): bounded, so a peer that never
    reads blocks the sender exactly as a full TCP window would."""

    def __init__(
        self,
        send_channel: trio.MemorySendChannel[str | bytes],
        receive_channel: trio.MemoryReceiveChannel[str | bytes],
    ) -> None:
        self._send_channel = send_channel
        self._receive_channel = receive_channel
        self.close_code: int | None = None  # set by whichever side closed first
        self.close_reason = ""
        self.peer: MemoryMessageSocket | None = None
        self._receive_streak = 0
        self._send_streak = 0

    async def receive(self) -> str | bytes:
        try:
            return await self._receive_channel.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise self._closed() from None

    def receive_nowait(self) -> str | bytes:
        """The next message if one is waiting; else (and once every :data:`NOWAIT_STREAK`
        messages, so that the caller waits and yields) raises ``trio.WouldBlock``."""
        if self._receive_streak >= NOWAIT_STREAK:
            self._receive_streak = 0
            raise trio.WouldBlock
        try:
            message = self._receive_channel.receive_nowait()
        except trio.WouldBlock:
            self._receive_streak = 0
            raise
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise self._closed() from None
        self._receive_streak += 1
        return message

    async def send(self, message: str | bytes) -> None:
        if self.close_code is not None:
            raise self._closed()
        try:
            await self._send_channel.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise self._closed() from None

    def send_nowait(self, message: str | bytes) -> None:
        """Hand ``message`` over if the pair has room; else (and once every
        :data:`NOWAIT_STREAK` messages) raises ``trio.WouldBlock``."""
        if self.close_code is not None:
            raise self._closed()
        if self._send_streak >= NOWAIT_STREAK:
            self._send_streak = 0
            raise trio.WouldBlock
        try:
            self._send_channel.send_nowait(message)
        except trio.WouldBlock:
            self._send_streak = 0
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise self._closed() from None
        self._send_streak += 1

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        self.close_now(code, reason)
        await trio.lowlevel.checkpoint()

    def close_now(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close without awaiting: usable in a ``finally`` while being cancelled."""
        for end in (self, self.peer):
            if end is not None and end.close_code is None:
                end.close_code, end.close_reason = code, reason
        self._send_channel.close()
        self._receive_channel.close()

    async def until_closed(self) -> tuple[list[str | bytes], int]:
        """Everything still to read, then the close code (tests: how did the other side end?)."""
        messages: list[str | bytes] = []
        while True:
            try:
                messages.append(await self.receive())
            except MessageSocketClosed as exc:
                return messages, exc.code

    def _closed(self) -> MessageSocketClosed:
        return MessageSocketClosed(self.close_code or CLOSE_GOING_AWAY, self.close_reason)


class SplitMessageSocket(MemoryMessageSocket):
    """A leg's end that reads straight from ``transport`` (one whose ``receive`` any task may
    await: :class:`media.asgi_websocket.AsgiWebsocket`) and sends through its pair to
    :func:`relay_outbound`: the caller's messages skip a task and a channel on their way in."""

    def __init__(
        self,
        transport: MessageSocket,
        send_channel: trio.MemorySendChannel[str | bytes],
        receive_channel: trio.MemoryReceiveChannel[str | bytes],
    ) -> None:
        super().__init__(send_channel, receive_channel)
        self._transport = transport

    async def receive(self) -> str | bytes:
        if self.close_code is not None:
            raise self._closed()
        return await self._transport.receive()

    def receive_nowait(self) -> str | bytes:
        raise trio.WouldBlock  # the transport offers no such thing: wait, under a deadline


def memory_socket_pair(
    capacity: int | float = math.inf,
) -> tuple[MemoryMessageSocket, MemoryMessageSocket]:
    """Two connected ends; each direction holds at most ``capacity`` unread messages."""
    a_send, b_receive = trio.open_memory_channel[str | bytes](capacity)
    b_send, a_receive = trio.open_memory_channel[str | bytes](capacity)
    return _joined(MemoryMessageSocket(a_send, a_receive), MemoryMessageSocket(b_send, b_receive))


def split_socket_pair(
    transport: MessageSocket, capacity: int | float
) -> tuple[SplitMessageSocket, MemoryMessageSocket]:
    """The leg's end over ``transport`` and the end :func:`relay_outbound` pumps from; at most
    ``capacity`` of the leg's messages wait for the transport."""
    a_send, b_receive = trio.open_memory_channel[str | bytes](capacity)
    b_send, a_receive = trio.open_memory_channel[str | bytes](0)  # unused: reads skip the pair
    leg_end = SplitMessageSocket(transport, a_send, a_receive)
    return _joined(leg_end, MemoryMessageSocket(b_send, b_receive))


def _joined(a: _End, b: MemoryMessageSocket) -> tuple[_End, MemoryMessageSocket]:
    a.peer, b.peer = b, a
    return a, b


async def close_quietly(
    socket: MessageSocket, code: int, reason: str, timeout_s: float = 1.0
) -> None:
    """Close for a hangup path: bounded in time, never raises (the peer may be gone already)."""
    with trio.move_on_after(timeout_s):
        with contextlib.suppress(
            MessageSocketClosed, OSError, trio.BrokenResourceError, trio.ClosedResourceError
        ):
            await socket.close(code, reason[:120])


async def send_within(socket: MessageSocket, message: str | bytes, timeout_s: float) -> None:
    """One send, bounded: a peer that stops reading costs a call, never a stuck task. A pair
    with room takes the message at once (no deadline needed, no scheduling round)."""
    try:
        if isinstance(socket, MemoryMessageSocket):
            with contextlib.suppress(trio.WouldBlock):
                return socket.send_nowait(message)
        with trio.move_on_after(timeout_s):
            # A real checkpoint every time: Hypercorn returns from a send on a dead connection
            # without one, and a sender in a loop would never see its deadline or cancellation.
            await trio.lowlevel.checkpoint()
            return await socket.send(message)
    except MessageSocketClosed as exc:
        raise LegError("closed", str(exc)) from None
    raise LegError("send_timeout", f"peer not reading for {timeout_s} s")


async def receive_within(socket: MessageSocket, timeout_s: float) -> str | bytes:
    """One receive, bounded; :class:`MessageSocketClosed` passes through (it is a hangup). A
    message already waiting in a pair is taken at once."""
    if isinstance(socket, MemoryMessageSocket):
        with contextlib.suppress(trio.WouldBlock):
            return socket.receive_nowait()
    with trio.move_on_after(timeout_s):
        return await socket.receive()
    raise LegError("idle_timeout", f"nothing for {timeout_s} s")


async def accept_within(
    socket: MessageSocket, timeout_s: float, parse: Callable[[str | bytes], T | None]
) -> T:
    """Feed messages to ``parse`` until it returns the handshake's result, within
    ``timeout_s``. Any :class:`LegError` (the protocol's own errors included) closes the
    socket with 1008 and propagates."""
    try:
        with trio.fail_after(timeout_s):
            while True:
                result = parse(await socket.receive())
                if result is not None:
                    return result
    except trio.TooSlowError:
        await close_quietly(socket, CLOSE_POLICY_VIOLATION, "start_timeout")
        raise LegError("start_timeout", f"no start within {timeout_s} s") from None
    except MessageSocketClosed as exc:
        raise LegError("closed", str(exc)) from None
    except LegError as exc:
        await close_quietly(socket, CLOSE_POLICY_VIOLATION, exc.reason)
        raise


async def relay(outer: MessageSocket, inner: MemoryMessageSocket) -> None:
    """Pump messages between a transport's socket (Quart-Trio's ``websocket``) and ``inner``,
    one end of a :func:`memory_socket_pair` whose other end a leg runs on, in the media core's
    own nursery. Two transport habits then stop mattering to the call: a client's disconnect
    cancels the handler (here: ``inner`` closes with 1001 and the leg sees a hangup, not a
    shutdown), and a write to a client that does not read blocks uncancellably (here: the
    bounded pair fills and the leg's own send deadline fires). Returns when either side ends;
    closes ``outer`` with the leg's close code."""
    code, reason = CLOSE_GOING_AWAY, "transport closed"
    try:
        async with trio.open_nursery() as nursery:

            async def inbound() -> None:
                with contextlib.suppress(MessageSocketClosed):
                    while True:
                        await inner.send(await outer.receive())
                nursery.cancel_scope.cancel()

            async def outbound() -> None:
                nonlocal code, reason
                code, reason = await _pump_outbound(outer, inner)
                nursery.cancel_scope.cancel()

            nursery.start_soon(inbound)
            nursery.start_soon(outbound)
    finally:
        inner.close_now(CLOSE_GOING_AWAY, "transport closed")
    await close_quietly(outer, code, reason)


async def relay_outbound(outer: MessageSocket, inner: MemoryMessageSocket) -> None:
    """:func:`relay` for a :func:`split_socket_pair`: the leg reads ``outer`` itself, so only
    its sends pass here. Returns once the leg closes its end (or ``outer`` is gone); closes
    ``outer`` with the leg's close code."""
    try:
        code, reason = await _pump_outbound(outer, inner)
    finally:
        inner.close_now(CLOSE_GOING_AWAY, "transport closed")
    await close_quietly(outer, code, reason)


async def _pump_outbound(outer: MessageSocket, inner: MemoryMessageSocket) -> tuple[int, str]:
    """Forward until ``inner`` closes (its close code and reason) or ``outer`` is gone (1001)."""
    while True:
        try:
            message = await inner.receive()
        except MessageSocketClosed as exc:
            return exc.code, exc.reason
        try:
            await outer.send(message)
        except MessageSocketClosed:
            return CLOSE_GOING_AWAY, "transport closed"
