"""The message socket the WebSocket legs run over, and an in-memory pair of them.

Twilio media streams, chan_websocket and the browser leg all ride a WebSocket, but who owns it
differs: Quart-Trio's ``websocket`` object in the control plane, a ``trio-websocket``
connection when we dial Asterisk, an in-memory pair in tests. Legs see only this Protocol.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Protocol, TypeVar

import trio

from media.leg import LegError

T = TypeVar("T")

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

    async def receive(self) -> str | bytes:
        try:
            return await self._receive_channel.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise self._closed() from None

    async def send(self, message: str | bytes) -> None:
        if self.close_code is not None:
            raise self._closed()
        try:
            await self._send_channel.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise self._closed() from None

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


def memory_socket_pair(
    capacity: int | float = math.inf,
) -> tuple[MemoryMessageSocket, MemoryMessageSocket]:
    """Two connected ends; each direction holds at most ``capacity`` unread messages."""
    a_send, b_receive = trio.open_memory_channel[str | bytes](capacity)
    b_send, a_receive = trio.open_memory_channel[str | bytes](capacity)
    a = MemoryMessageSocket(a_send, a_receive)
    b = MemoryMessageSocket(b_send, b_receive)
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
    """One send, bounded: a peer that stops reading costs a call, never a stuck task."""
    try:
        with trio.fail_after(timeout_s):
            # A real checkpoint every time: Hypercorn returns from a send on a dead connection
            # without one, and a sender in a loop would never see its deadline or cancellation.
            await trio.lowlevel.checkpoint()
            await socket.send(message)
    except trio.TooSlowError:
        raise LegError("send_timeout", f"peer not reading for {timeout_s} s") from None
    except MessageSocketClosed as exc:
        raise LegError("closed", str(exc)) from None


async def receive_within(socket: MessageSocket, timeout_s: float) -> str | bytes:
    """One receive, bounded; :class:`MessageSocketClosed` passes through (it is a hangup)."""
    try:
        with trio.fail_after(timeout_s):
            return await socket.receive()
    except trio.TooSlowError:
        raise LegError("idle_timeout", f"nothing for {timeout_s} s") from None


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
                try:
                    while True:
                        await outer.send(await inner.receive())
                except MessageSocketClosed as exc:
                    code, reason = exc.code, exc.reason
                nursery.cancel_scope.cancel()

            nursery.start_soon(inbound)
            nursery.start_soon(outbound)
    finally:
        inner.close_now(CLOSE_GOING_AWAY, "transport closed")
    await close_quietly(outer, code, reason)
