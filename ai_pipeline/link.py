"""The agent's end of the agent link, as a pipeline sees it: typed frames in and out.

:mod:`ai_pipeline.server` accepts the WebSocket, reads the :class:`~proto.messages.CallStart`,
and hands the rest of the call to a :data:`CallHandler` with an :class:`AgentLink`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias

from proto.messages import CallStart, LinkFrame


class LinkClosed(Exception):
    """The media core went away (or sent a fatal frame); the call is over."""


class AgentLink(Protocol):
    async def recv(self) -> LinkFrame:
        """Next frame from the media core; raises :class:`LinkClosed` when the call ends."""

    async def send(self, frame: LinkFrame) -> None:
        """Send one frame; raises :class:`LinkClosed` if the media core went away."""


CallHandler: TypeAlias = Callable[[CallStart, AgentLink], Awaitable[None]]
