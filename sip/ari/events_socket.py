"""ARI's events WebSocket (``/ari/events?app=NAME``) on Trio: a thin adapter over the
``websockets`` library's sans-I/O ``ClientProtocol``, text messages only.

Credentials go in an ``Authorization: Basic`` header (ARI accepts it on the upgrade), not in
the URL's ``api_key``, so that they never appear in a logged URL. A 401 answer to the upgrade is
:class:`AriAuthError`: retrying cannot fix it. Every read has a deadline (Asterisk sends nothing
on a quiet system, so the adapter pings and treats silence past the deadline as a dead socket).
"""

from __future__ import annotations

import base64
import contextlib
from collections import deque
from urllib.parse import urlencode, urlsplit

import trio
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

_READ_BYTES = 65536
MAX_EVENT_BYTES = 1 << 20  # a StasisStart with many channel variables is a few KiB


class AriSocketError(Exception):
    """The events socket could not be opened, or broke."""


class AriAuthError(AriSocketError):
    """Asterisk refused the ARI user or password (HTTP 401): fix the configuration."""


def basic_auth(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def events_url(base_url: str, app: str) -> str:
    """``http://HOST:PORT/ari`` -> ``ws://HOST:PORT/ari/events?app=NAME&subscribeAll=false``."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = urlencode({"app": app, "subscribeAll": "false"})
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/events?{query}"


class EventsSocket:
    def __init__(self, stream: trio.SocketStream, protocol: ClientProtocol) -> None:
        self._stream = stream
        self._ws = protocol
        self._pending: deque[str] = deque()
        self._fragments: list[bytes] = []

    @classmethod
    async def connect(cls, url: str, authorization: str, timeout_s: float) -> EventsSocket:
        uri = parse_uri(url)
        if uri.secure:
            raise AriSocketError("wss:// ARI is not supported; keep ARI on a private network")
        protocol = ClientProtocol(uri, max_size=MAX_EVENT_BYTES)
        try:
            with trio.fail_after(timeout_s):
                stream = await trio.open_tcp_stream(uri.host, uri.port)
                sock = cls(stream, protocol)
                try:
                    await sock._handshake(authorization)
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
        except trio.TooSlowError:
            raise AriSocketError(f"no WebSocket handshake within {timeout_s} s") from None
        except OSError as exc:
            raise AriSocketError(f"cannot connect: {exc}") from None
        return sock

    async def _handshake(self, authorization: str) -> None:
        request = self._ws.connect()
        request.headers["Authorization"] = authorization
        self._ws.send_request(request)
        await self._flush()
        while True:
            data = await self._read()
            if not data:
                raise AriSocketError("Asterisk closed the connection during the handshake")
            self._ws.receive_data(data)
            for event in self._ws.events_received():
                if isinstance(event, Response):
                    if self._ws.state is State.OPEN:
                        return
                    exc = self._ws.handshake_exc
                    if isinstance(exc, InvalidStatus) and exc.response.status_code == 401:
                        raise AriAuthError("Asterisk refused the ARI credentials (401)")
                    raise AriSocketError(f"WebSocket upgrade refused: {exc}")

    async def _read(self) -> bytes:
        try:
            return bytes(await self._stream.receive_some(_READ_BYTES))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise AriSocketError(f"connection lost: {exc}") from None

    async def _flush(self) -> None:
        data = b"".join(self._ws.data_to_send())
        if data:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise AriSocketError(f"connection lost: {exc}") from None

    async def receive(self, idle_timeout_s: float) -> str:
        """Next text message. Pings once half of ``idle_timeout_s`` passes in silence; raises
        :class:`AriSocketError` when the socket closes or stays silent past the deadline."""
        while not self._pending:
            with trio.move_on_after(idle_timeout_s / 2):
                await self._receive_more()
                continue
            self._ws.send_ping(b"cb")
            await self._flush()
            with trio.move_on_after(idle_timeout_s / 2):
                await self._receive_more()
                continue
            raise AriSocketError(f"nothing from Asterisk for {idle_timeout_s} s")
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
        if not self._pending and (not data or self._ws.state is State.CLOSED):
            raise AriSocketError(f"Asterisk closed the events socket (code {self._ws.close_code})")

    def _on_frame(self, frame: Frame) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.CONT):
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                self._pending.append(b"".join(self._fragments).decode("utf-8", "replace"))
                self._fragments.clear()

    async def aclose(self) -> None:
        with trio.move_on_after(1.0) as scope:
            scope.shield = True
            if self._ws.state is State.OPEN:
                self._ws.send_close(1000, "")
                with contextlib.suppress(AriSocketError):
                    await self._flush()
        await trio.aclose_forcefully(self._stream)
