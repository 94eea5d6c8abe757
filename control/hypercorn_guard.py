"""One connection's failure inside Hypercorn ends that connection, never the server.

Hypercorn's Trio worker runs each connection (``hypercorn.trio.tcp_server.TCPServer``) as a task
of the server's own nursery: an exception that escapes one connection's task ends the nursery,
and with it the HTTP listener, the media WebSockets and every call on them. Hypercorn 0.18 lets
some escape: a WebSocket whose peer closes while we close it can have ``send_eof`` and a
``send_all`` meet on the same stream, and ``protocol_send`` catches ``BrokenResourceError`` and
``ClosedResourceError`` but not the resulting ``BusyResourceError`` (seen in the two-node
conference tests: one link closed from both sides at once took its node down).

:func:`install` has Hypercorn's worker build its connections from :class:`GuardedTCPServer`,
which logs such a failure and closes that connection's stream. Cancellation (a shutdown) is a
``BaseException`` and passes through as before. :func:`serve` is ``hypercorn.trio.serve`` with
the guard installed: what the control plane starts.
"""

from __future__ import annotations

import logging
from typing import Any

import hypercorn.trio
import hypercorn.trio.run as hypercorn_run
import trio
from hypercorn.trio.tcp_server import TCPServer

log = logging.getLogger(__name__)


class GuardedTCPServer(TCPServer):
    """Hypercorn's connection, whose failure stays its own."""

    async def run(self) -> None:
        try:
            await super().run()
        except Exception as exc:
            log.warning(
                "an HTTP connection failed inside Hypercorn; closed, the server goes on",
                extra={"error": f"{type(exc).__name__}: {exc}"},
                exc_info=exc,
            )
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)


def install() -> None:
    """Hypercorn's Trio worker builds its connections from :class:`GuardedTCPServer` (it names
    the class through its module's global, looked up at each connection)."""
    setattr(hypercorn_run, "TCPServer", GuardedTCPServer)  # noqa: B010 - not exported


async def serve(*args: Any, **kwargs: Any) -> None:
    """``hypercorn.trio.serve`` (same arguments, ``task_status`` included), guarded."""
    install()
    await hypercorn.trio.serve(*args, **kwargs)
