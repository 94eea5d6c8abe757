"""The agent's end of the agent link, as a pipeline sees it: typed frames in and out.

:mod:`ai_pipeline.server` accepts the WebSocket, reads the :class:`~proto.messages.CallStart`,
and hands the rest of the call to a :data:`CallHandler` with an :class:`AgentLink`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias

from proto.messages import CallStart, Error, LinkFrame

log = logging.getLogger(__name__)


class LinkClosed(Exception):
    """The media core went away (or sent a fatal frame); the call is over."""


class AgentLink(Protocol):
    async def recv(self) -> LinkFrame:
        """Next frame from the media core; raises :class:`LinkClosed` when the call ends."""

    async def send(self, frame: LinkFrame) -> None:
        """Send one frame; raises :class:`LinkClosed` if the media core went away."""


CallHandler: TypeAlias = Callable[[CallStart, AgentLink], Awaitable[None]]


async def run_handler(handler: CallHandler, start: CallStart, link: AgentLink) -> bool:
    """Run one call; False when the handler failed (logged, and the media core told with a fatal
    ``Error`` frame if it still listens: the caller hears the call end, not silence)."""
    try:
        await handler(start, link)
    except LinkClosed:
        pass
    except Exception as exc:
        log.exception("call handler failed", extra={"call_id": start.call_id})
        with contextlib.suppress(LinkClosed):
            await link.send(Error("internal", type(exc).__name__, fatal=True))
        return False
    return True
