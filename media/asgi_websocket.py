"""A WebSocket on the ASGI server's own ``receive``/``send`` (ASGI 3.0, "WebSocket" scope).

Why not the web framework's ``websocket`` object: Quart-Trio puts a task and a channel of its own
between Hypercorn and the handler (and fires two signals per message), and its ``websocket`` is a
context-local proxy that only the handler's task may use. Hypercorn's ``receive`` is a bounded
channel's ``receive``: any task may await it and a cancelled wait loses nothing, so a leg in the
media core's nursery can read the caller's messages straight from it, one scheduling round after
Hypercorn parsed them instead of three. Sends still go through the handler's task
(:func:`media.message_socket.relay_outbound`): Hypercorn shields its socket writes, so a client
that stops reading blocks them uncancellably, and that must not be the call's task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from media.message_socket import CLOSE_NORMAL, MessageSocketClosed

AsgiReceive = Callable[[], Awaitable[Mapping[str, Any]]]
AsgiSend = Callable[[dict[str, Any]], Awaitable[None]]
CLOSE_NO_STATUS = 1005  # RFC 6455 7.4.1: the peer closed without a code


class AsgiWebsocket:
    """Implements :class:`media.message_socket.MessageSocket`; ``receive`` may be awaited from
    any task (one at a time), ``send`` and ``close`` from the handler's task only."""

    def __init__(self, scope: Mapping[str, Any], receive: AsgiReceive, send: AsgiSend) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self._gone: MessageSocketClosed | None = None  # the client closed, or we did

    async def connected(self) -> None:
        """Wait for the opening ``websocket.connect``; raises :class:`MessageSocketClosed` if
        the client left first."""
        event = await self._receive()
        if event["type"] != "websocket.connect":
            raise self._closed_by(event)

    async def accept(self, subprotocol: str | None = None) -> None:
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": []})

    async def receive(self) -> str | bytes:
        if self._gone is not None:
            raise self._gone
        event = await self._receive()
        if event["type"] == "websocket.receive":
            text = event.get("text")
            if text is not None:
                return str(text)
            return bytes(event.get("bytes") or b"")
        raise self._closed_by(event)

    async def send(self, message: str | bytes) -> None:
        if self._gone is not None:
            raise self._gone
        if isinstance(message, str):
            await self._send({"type": "websocket.send", "text": message})
        else:
            await self._send({"type": "websocket.send", "bytes": message})

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Idempotent; after the client has gone, a no-op (there is nobody to tell)."""
        if self._gone is None:
            self._gone = MessageSocketClosed(code, reason)
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def _closed_by(self, event: Mapping[str, Any]) -> MessageSocketClosed:
        self._gone = MessageSocketClosed(
            int(event.get("code", CLOSE_NO_STATUS)), str(event.get("reason") or "")
        )
        return self._gone
