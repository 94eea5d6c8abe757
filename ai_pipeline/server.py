"""The agent server: accepts agent-link WebSockets (one per call) and runs a call handler on each.

A WebSocket on :data:`proto.mux.MUX_PATH` is instead a multiplexed link carrying many calls
(:mod:`ai_pipeline.mux_server`); each of them gets the same handler and the same guarantees.

asyncio, because pipecat is. The first frame of a connection must be ``CallStart`` within
``start_timeout_s``; after that the handler owns the call. A handler's crash ends that call with an
``Error`` frame and a close code, and never the server.

Readiness is the link's own handshake: every opening handshake's answer names this process
(``Callbridge-Agent-Pid``), so ``serve`` knows that its own child answered, not a stranger on the
port; a handshake on :data:`READY_PATH` is a probe and is closed at once, without a log line. The
answer also says how many calls this process runs as it answers (``Callbridge-Agent-Calls``,
per-call WebSockets and multiplexed calls alike): what this agent carries, whatever the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ai_pipeline.link import CallHandler, LinkClosed, run_handler
from ai_pipeline.mux_server import MuxConnection
from proto.codec import LinkDecodeError, decode, encode
from proto.messages import CallStart, LinkFrame
from proto.mux import MAX_BATCH_BYTES, MUX_PATH

log = logging.getLogger(__name__)

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INTERNAL_ERROR = 1011
READY_PATH = "/ready"
PID_HEADER = "Callbridge-Agent-Pid"
CALLS_HEADER = "Callbridge-Agent-Calls"


class WebSocketAgentLink:
    """:class:`ai_pipeline.link.AgentLink` over one ``websockets`` server connection."""

    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws

    async def recv(self) -> LinkFrame:
        while True:
            try:
                message = await self._ws.recv()
            except ConnectionClosed as exc:
                raise LinkClosed(str(exc)) from None
            if isinstance(message, str):
                raise LinkClosed("text message on the agent link")
            try:
                frame = decode(message)
            except LinkDecodeError as exc:
                raise LinkClosed(f"bad frame: {exc}") from None
            if frame is not None:
                return frame

    async def send(self, frame: LinkFrame) -> None:
        try:
            await self._ws.send(encode(frame))
        except ConnectionClosed as exc:
            raise LinkClosed(str(exc)) from None


class AgentServer:
    def __init__(self, handler: CallHandler, start_timeout_s: float = 5.0) -> None:
        self._handler = handler
        self._start_timeout_s = start_timeout_s
        self.calls_active = 0  # calls on WebSockets of their own
        self._muxes: set[MuxConnection] = set()

    @property
    def live_calls(self) -> int:
        """Calls this process runs now, over their own WebSockets or multiplexed."""
        return self.calls_active + sum(conn.calls_active for conn in self._muxes)

    async def _serve_connection(self, ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path == READY_PATH:
            # A readiness probe: the handshake was the answer. The prober closes; closing first
            # would race its reading of the handshake's answer.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), self._start_timeout_s)
            return
        if ws.request is not None and ws.request.path == MUX_PATH:
            conn = MuxConnection(ws, self._handler)  # many calls, framed by channel
            self._muxes.add(conn)
            try:
                await conn.run()
            finally:
                self._muxes.discard(conn)
            return
        link = WebSocketAgentLink(ws)
        try:
            first = await asyncio.wait_for(link.recv(), self._start_timeout_s)
        except (TimeoutError, LinkClosed) as exc:
            log.info("agent link refused", extra={"reason": str(exc) or "no call_start"})
            await ws.close(CLOSE_PROTOCOL_ERROR, "expected call_start")
            return
        if not isinstance(first, CallStart):
            await ws.close(CLOSE_PROTOCOL_ERROR, "expected call_start")
            return
        self.calls_active += 1
        try:
            if not await run_handler(self._handler, first, link):
                await ws.close(CLOSE_INTERNAL_ERROR, "agent failed")
        finally:
            self.calls_active -= 1
        await ws.close()

    async def start(self, host: str, port: int) -> Server:
        return await serve(
            self._serve_connection,
            host,
            port,
            # A multiplexed batch may be larger than one frame; a per-call link's frame is
            # still refused above MAX_LINK_FRAME_BYTES by its decoding (LinkDecodeError).
            max_size=MAX_BATCH_BYTES,
            compression=None,  # PCM does not deflate; compression would only cost CPU
            ping_interval=20,
            ping_timeout=20,
            process_response=self._name_this_process,
        )

    def _name_this_process(
        self, ws: ServerConnection, request: Request, response: Response
    ) -> Response:
        response.headers[PID_HEADER] = str(os.getpid())
        response.headers[CALLS_HEADER] = str(self.live_calls)
        return response
