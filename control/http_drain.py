"""HTTP/1.1 keep-alive after an answer given before the request body was read (ASGI middleware).

The defect: answering early (401 before the body arrived, 413 for a body over the limit) left the
connection hanging. Under Hypercorn's Trio worker with Quart-Trio, once the response is complete
Hypercorn sees the client still sending (h11: ours DONE, theirs SEND_BODY), so it cannot reuse
the connection and closes it, from inside the app's final ``send``. Quart-Trio's message task
gets the resulting ``http.disconnect`` and cancels the request's nursery; that cancellation lands
on the very ``send`` doing the close, so ``send_eof``/``aclose`` never ran: the socket stayed
open, the rest of the body went nowhere, and the next request on it never got an answer.

What this does, per request (RFC 9112 section 9.6 and 9.3):

- The final body message is sent under a shield, so Hypercorn's own bookkeeping (close, or
  start the next keep-alive cycle and its idle timer) always runs to the end.
- An answer given while the body is still arriving is sent at once, complete, and the response is
  held open only until the rest of the body has arrived (Quart discards what is over its limit),
  so the connection is reused. The wait is bounded: ``max_drain_bytes`` still to come at most
  (more than that: ``Connection: close`` from the start) and ``drain_timeout_s``; past either the
  connection is closed cleanly after the answer.

Responses without a ``content-length`` are drained before they are sent, since their end is
only visible when the response completes.
"""

from __future__ import annotations

from collections.abc import Iterable

import trio
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    HTTPResponseBodyEvent,
    Scope,
)

DRAIN_MAX_BYTES = 1 << 20  # a megabyte on loopback or a LAN takes milliseconds to discard
DRAIN_TIMEOUT_S = 5.0  # a client that declared a body and stops sending it is closed after this


class _RequestBody:
    """What has been seen of one request's body, through the app's ``receive``."""

    def __init__(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        # RFC 9112 section 6.3: no Content-Length and no Transfer-Encoding is no body at all.
        self.expected_bytes: int | None = 0
        for name, value in headers:
            if name.lower() == b"content-length" and value.strip().isdigit():
                self.expected_bytes = int(value)
            elif name.lower() == b"transfer-encoding":
                self.expected_bytes = None  # chunked: known only at its end
        self.received_bytes = 0
        self.done = trio.Event()
        if self.expected_bytes == 0:
            self.done.set()

    def saw(self, message: ASGIReceiveEvent) -> None:
        if message["type"] == "http.request":
            self.received_bytes += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.done.set()
        elif message["type"] == "http.disconnect":
            self.done.set()

    def too_much_to_drain(self, max_bytes: int) -> bool:
        if self.expected_bytes is None:
            return False  # chunked: bounded by the timeout alone
        return self.expected_bytes - self.received_bytes > max_bytes


def _has_length(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == b"content-length" for name, _ in headers)


def _body(data: bytes, more: bool) -> HTTPResponseBodyEvent:
    return {"type": "http.response.body", "body": data, "more_body": more}


class DrainBeforeReuse:
    """Wraps an ASGI app (``app.asgi_app = DrainBeforeReuse(app.asgi_app)``)."""

    def __init__(
        self,
        app: ASGIFramework,
        max_drain_bytes: int = DRAIN_MAX_BYTES,
        drain_timeout_s: float = DRAIN_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.max_drain_bytes = max_drain_bytes
        self.drain_timeout_s = drain_timeout_s

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _RequestBody(scope["headers"])
        has_length, closing = True, False

        async def tracked_receive() -> ASGIReceiveEvent:
            message = await receive()
            body.saw(message)
            return message

        async def guarded_send(message: ASGISendEvent) -> None:
            nonlocal has_length, closing
            if message["type"] == "http.response.start" and not body.done.is_set():
                headers = list(message["headers"])
                has_length = _has_length(headers)
                closing = body.too_much_to_drain(self.max_drain_bytes)
                if closing:
                    message["headers"] = [*headers, (b"connection", b"close")]
            if message["type"] != "http.response.body" or message.get("more_body", False):
                await send(message)
                return
            if not closing and not body.done.is_set():
                if has_length:  # the client gets its whole answer now; the end waits
                    await send(_body(message.get("body", b""), more=True))
                    message = _body(b"", more=False)
                with trio.move_on_after(self.drain_timeout_s):
                    await body.done.wait()
            with trio.CancelScope(shield=True):
                await send(message)

        await self.app(scope, tracked_receive, guarded_send)
