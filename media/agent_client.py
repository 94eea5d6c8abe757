"""The media core's end of the agent link: a WebSocket client on Trio.

A thin adapter (style 2) over the ``websockets`` library's sans-I/O ``ClientProtocol``: this module
only moves bytes between a Trio TCP stream and the protocol object, and frames through
:mod:`proto.codec`. One instance per call; ``recv`` from one task, ``send`` from any (a lock keeps
writes whole and in order). The per-frame path uses :class:`media.fastio.FastSocket`:
:meth:`AgentClient.send_nowait` writes a frame from the caller's own task when the kernel takes
it at once, and ``recv`` yields only when it has to wait. Liveness: the handshake has a
deadline, sends that wait have a deadline, and a silent agent is detected by the call (no bytes
at all for two ping periods) while pings keep the TCP path honest.

A URL with ``?agent_protocol=pipecat`` names a stock pipecat peer (``WebsocketServerTransport``
or ``FastAPIWebsocketTransport`` with ``ProtobufFrameSerializer``): our frames beyond pipecat's
five are sent to it as pipecat ``MessageFrame`` s (:mod:`proto.stock_pipecat`), never as the
extension fields it cannot parse; the parameter itself is not sent.
"""

from __future__ import annotations

import logging
from collections import deque
from types import TracebackType
from typing import Self

import trio
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidURI
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from media.fastio import FastSocket
from media.ws_client_frames import BinaryFramer
from proto.codec import MAX_LINK_FRAME_BYTES, LinkDecodeError, decode, encode
from proto.messages import Audio, LinkFrame
from proto.stock_pipecat import AgentProtocol, for_stock_pipecat, split_agent_url

log = logging.getLogger(__name__)

_READ_BYTES = 65536


class AgentLinkError(Exception):
    """The agent link failed; ``reason`` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class AgentClient:
    MAX_MESSAGE_BYTES = MAX_LINK_FRAME_BYTES  # (a multiplexed link's batches are larger)

    def __init__(
        self,
        stream: trio.SocketStream,
        protocol: ClientProtocol,
        agent_protocol: AgentProtocol = "callbridge",
    ) -> None:
        self.agent_protocol = agent_protocol
        self._stock_pipecat = agent_protocol == "pipecat"
        self._stream = stream
        self._fast = FastSocket(stream)
        self._framer = BinaryFramer()  # send_nowait's frames; ClientProtocol does the rest
        self._ws = protocol
        self._send_lock = trio.Lock()
        self._unsent = b""  # the tail of a write the kernel only took part of; goes out first
        self._pending: deque[LinkFrame] = deque()
        self._fragments: list[bytes] = []
        self.last_receive_time = trio.current_time()  # any bytes, pongs included
        self.handshake_response: Response | None = None

    @classmethod
    async def connect(cls, url: str, timeout_s: float) -> Self:
        """Open TCP and complete the WebSocket handshake within ``timeout_s``."""
        try:
            connect_url, agent_protocol = split_agent_url(url)
            uri = parse_uri(connect_url)
        except (InvalidURI, ValueError) as exc:
            raise AgentLinkError("bad_url", str(exc)) from exc
        if uri.secure:
            raise AgentLinkError("bad_url", "wss:// is not supported yet; keep agents on loopback")
        protocol = ClientProtocol(uri, max_size=cls.MAX_MESSAGE_BYTES)
        try:
            with trio.fail_after(timeout_s):
                stream = await trio.open_tcp_stream(uri.host, uri.port)
                client = cls(stream, protocol, agent_protocol)
                try:
                    await client._handshake()
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
        except trio.TooSlowError:
            raise AgentLinkError("connect_timeout", f"{url} within {timeout_s} s") from None
        except OSError as exc:
            raise AgentLinkError("connect_failed", f"{url}: {exc}") from None
        return client

    async def _handshake(self) -> None:
        self._ws.send_request(self._ws.connect())
        await self._flush()
        while True:
            data = await self._read()
            self._ws.receive_data(data)
            for event in self._ws.events_received():
                if isinstance(event, Response):
                    if self._ws.state is not State.OPEN:
                        raise AgentLinkError("handshake", str(self._ws.handshake_exc))
                    self.handshake_response = event  # who answered (serve's readiness probe)
                    return
            if not data:
                raise AgentLinkError("handshake", "agent closed during the handshake")

    async def _read(self) -> bytes:
        try:
            data = await self._fast.receive_some(_READ_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise AgentLinkError("closed", str(exc)) from None
        self.last_receive_time = trio.current_time()
        return data

    async def _flush(self) -> None:
        data = b"".join(self._ws.data_to_send())
        if not data and not self._unsent:
            return
        async with self._send_lock:  # FIFO: writers go out in the order they took their bytes
            # A send_nowait's leftover was written before any bytes a waiter holds (it only
            # runs while the lock is free), so it goes first.
            data, self._unsent = self._unsent + data, b""
            if not data:
                return
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise AgentLinkError("closed", str(exc)) from None

    @property
    def has_unsent(self) -> bool:
        """A :meth:`send_nowait` left bytes behind; :meth:`flush` must follow."""
        return bool(self._unsent)

    async def flush(self) -> None:
        """Write whatever is left over; raises :class:`AgentLinkError` if the link is gone."""
        await self._flush()

    @property
    def closed_by_agent(self) -> bool:
        """The agent sent its close frame (its last frames may not all be read yet)."""
        return self._ws.close_rcvd is not None

    async def send(self, frame: LinkFrame) -> None:
        """Send one frame; raises :class:`AgentLinkError` if the link is gone."""
        if self._ws.state is not State.OPEN:
            raise AgentLinkError("closed", "link is not open")
        self._ws.send_binary(self._encode(frame))
        await self._flush()

    def send_nowait(self, frame: LinkFrame) -> bool:
        """Send ``frame`` from this task without waiting, if nothing else is being written:
        True when it was taken (if :attr:`has_unsent` is then set, the kernel took only part and
        :meth:`flush` must follow); False when it was not, so use :meth:`send`. Raises
        :class:`AgentLinkError` if the link is gone."""
        return self.send_message_nowait(self._encode(frame))

    def send_message_nowait(self, message: bytes) -> bool:
        """:meth:`send_nowait` for a message already encoded (a multiplexed link's batch)."""
        if self._send_lock.locked() or self._unsent:
            return False
        if self._ws.state is not State.OPEN:
            raise AgentLinkError("closed", "link is not open")
        data = b"".join((*self._ws.data_to_send(), self._framer.frame(message)))
        try:
            written = self._fast.send_nowait(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise AgentLinkError("closed", str(exc)) from None
        self._unsent = data[written:]
        return True

    def _encode(self, frame: LinkFrame) -> bytes:
        if self._stock_pipecat and type(frame) is not Audio:  # (audio: the per-frame path)
            frame = for_stock_pipecat(frame)
        return encode(frame)

    async def recv(self) -> LinkFrame:
        """Next frame from the agent. Unknown frame kinds are skipped (newer agents)."""
        while not self._pending:
            await self._receive_more()
        return self._pending.popleft()

    async def _receive_more(self) -> None:
        data = await self._read()
        if data:
            self._ws.receive_data(data)
        else:
            self._ws.receive_eof()
        for event in self._ws.events_received():
            if isinstance(event, Frame):
                self._on_frame(event)
        await self._flush()  # pongs, close replies
        if not self._pending and self._ws.state is State.CLOSED:
            code = self._ws.close_code
            raise AgentLinkError("closed", f"agent closed the link (code {code})")
        if not data and not self._pending:
            raise AgentLinkError("closed", "agent closed the connection")

    def _on_frame(self, frame: Frame) -> None:
        if frame.opcode in (Opcode.BINARY, Opcode.CONT):
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                message = b"".join(self._fragments)
                self._fragments.clear()
                self._decode(message)
        elif frame.opcode is Opcode.TEXT:
            raise AgentLinkError("protocol", "text message on the agent link")

    def _decode(self, message: bytes) -> None:
        try:
            decoded = decode(message)
        except LinkDecodeError as exc:
            raise AgentLinkError("bad_frame", str(exc)) from None
        if decoded is not None:
            self._pending.append(decoded)

    async def ping(self) -> None:
        self._ws.send_ping(b"cb")
        await self._flush()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close politely if possible, within one second, then drop the TCP stream."""
        with trio.move_on_after(1.0) as scope:
            scope.shield = True
            try:
                if self._ws.state is State.OPEN:
                    self._ws.send_close(code, reason[:100])
                    await self._flush()
            except AgentLinkError:
                pass
        await trio.aclose_forcefully(self._stream)

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
