"""ARI's REST calls over a few kept-alive HTTP/1.1 connections (h11 on Trio).

A call's set-up is four or five REST calls and its end two more: one TCP connection (and one
Asterisk HTTP session thread) per request is wasted work on both sides. Asterisk keeps a
connection open between requests (``http.conf`` ``session_keep_alive``, 15 s by default), so
the pool lends an idle connection or opens one, and takes it back when the exchange ended
cleanly and both sides may go on; at most ``max_idle`` wait, none longer than ``idle_s`` (less
than Asterisk's keep-alive, so that it is rarely Asterisk that closes one first).

A kept connection that Asterisk closed meanwhile fails before any byte of an answer: the request
goes once more on a new connection. A request cut short (deadline, cancellation, an error)
closes its connection, which is never lent again half-read.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11
import trio

from control.httpclient import HttpClientError, HttpResponse

_FAILURES = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError)


class _Stale(Exception):
    """A kept connection closed under us before any answer: worth one more try."""


@dataclass(slots=True)
class _Connection:
    stream: trio.abc.Stream
    http: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    reused: bool = False
    idle_since: float = 0.0


class HttpPool:
    """Keep-alive connections to the one server of ``base_url`` (``http`` or ``https``)."""

    def __init__(self, base_url: str, max_idle: int = 4, idle_s: float = 10.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"unsupported URL {base_url!r}")
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._host_header = parts.netloc.rpartition("@")[2]
        self._idle: list[_Connection] = []
        self.max_idle = max_idle
        self.idle_s = idle_s
        self.opened = 0  # connections opened so far

    async def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        timeout_s: float,
        max_response_bytes: int,
    ) -> HttpResponse:
        """One request (no body: ARI takes its parameters in the query string) within
        ``timeout_s``; raises :class:`HttpClientError` when no usable answer came."""
        head = [("Host", self._host_header), ("Content-Length", "0"), *headers.items()]
        req = h11.Request(method=method, target=target, headers=head)
        with trio.move_on_after(timeout_s):
            try:
                conn = await self._take()
                if conn is not None:
                    try:
                        return await self._exchange(conn, req, max_response_bytes)
                    except _Stale:
                        pass
                return await self._exchange(await self._open(), req, max_response_bytes)
            except (*_FAILURES, ssl.SSLError, _Stale) as exc:
                raise HttpClientError(f"{method} {target}: {exc or type(exc).__name__}") from exc
        raise HttpClientError(f"{method} {target}: no response within {timeout_s:g} s")

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await trio.aclose_forcefully(conn.stream)

    async def _take(self) -> _Connection | None:
        now = trio.current_time()
        expired = [c for c in self._idle if now - c.idle_since >= self.idle_s]
        self._idle = [c for c in self._idle if now - c.idle_since < self.idle_s]
        for conn in expired:
            await trio.aclose_forcefully(conn.stream)
        return self._idle.pop() if self._idle else None  # the most recently used

    async def _open(self) -> _Connection:
        stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
        if self._tls is not None:
            stream = trio.SSLStream(stream, self._tls, server_hostname=self._host)
        self.opened += 1
        return _Connection(stream)

    async def _exchange(
        self, conn: _Connection, req: h11.Request, max_response_bytes: int
    ) -> HttpResponse:
        kept = False
        try:
            resp = await self._send_and_read(conn, req, max_response_bytes)
            kept = self._give_back(conn)
            return resp
        finally:
            if not kept:
                await trio.aclose_forcefully(conn.stream)

    async def _send_and_read(
        self, conn: _Connection, req: h11.Request, max_response_bytes: int
    ) -> HttpResponse:
        http = conn.http
        status = 0
        try:
            await conn.stream.send_all(http.send(req) + http.send(h11.EndOfMessage()))
            while status == 0:
                status = await _read_head(conn)
        except _FAILURES as exc:
            if conn.reused:
                raise _Stale(str(exc)) from exc
            raise
        body = bytearray()
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(bytes(await conn.stream.receive_some(65536)))
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > max_response_bytes:
                    raise HttpClientError(f"response over {max_response_bytes} bytes")
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return HttpResponse(status, bytes(body))

    def _give_back(self, conn: _Connection) -> bool:
        http = conn.http
        if http.our_state is not h11.DONE or http.their_state is not h11.DONE:
            return False  # "Connection: close", or a body read to the socket's end
        if len(self._idle) >= self.max_idle:
            return False
        http.start_next_cycle()
        conn.reused, conn.idle_since = True, trio.current_time()
        self._idle.append(conn)
        return True


async def _read_head(conn: _Connection) -> int:
    """The status of the response, once its head has arrived; 0 while it has not (interim
    ``1xx`` answers are skipped). A close before it is an error (h11's or ours)."""
    event = conn.http.next_event()
    if event is h11.NEED_DATA:
        conn.http.receive_data(bytes(await conn.stream.receive_some(65536)))
        return 0
    if isinstance(event, h11.Response):
        return event.status_code
    if isinstance(event, h11.ConnectionClosed):
        raise trio.BrokenResourceError("closed before an answer")
    return 0  # an InformationalResponse
