"""A real WebSocket client for the media legs' tests: ``websockets``' sync client in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


@dataclass
class Session:
    received: list[str | bytes]
    code: int | None  # the server's close code, None if it never sent one
    reason: str


def play(
    url: str,
    first: Sequence[str | bytes],
    chunks: Sequence[str | bytes] = (),
    last: str | None = None,
    *,
    close: bool = True,
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
) -> Session:
    """Send ``first``, then ``chunks`` in real time (20 ms apart), then ``last``, or a close if
    ``close``; collect everything until the server closes (at most ~20 s of silence)."""
    received: list[str | bytes] = []
    with connect(
        url,
        additional_headers=headers,
        subprotocols=subprotocols,  # type: ignore[arg-type]
        open_timeout=10,
        close_timeout=10,
    ) as ws:

        def reader() -> None:
            try:
                while True:
                    received.append(ws.recv(timeout=20))
            except (ConnectionClosed, TimeoutError):
                pass

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for message in first:
                ws.send(message)
            deadline = time.monotonic()
            for chunk in chunks:
                ws.send(chunk)
                deadline += 0.02
                time.sleep(max(0.0, deadline - time.monotonic()))
            if last is not None:
                ws.send(last)
            elif close:
                ws.close()
        except ConnectionClosed:
            pass  # the server ended it first: what it sent says why
        thread.join(25)
        rcvd = ws.protocol.close_rcvd
    return Session(received, rcvd.code if rcvd else None, rcvd.reason if rcvd else "")
