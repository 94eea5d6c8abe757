"""The ARI connection on Trio: REST calls, and the events WebSocket held open with back-off.

:meth:`AriClient.run` owns the events socket for the life of the process: it connects, tells
the application it is connected (the application reconciles: events were lost while the socket
was down), then feeds it one event at a time. A lost socket is retried with capped exponential
back-off; only refused credentials at start-up end it (:class:`AriAuthError`: a restart cannot
fix a wrong password). REST calls each have a deadline, so a slow Asterisk never stalls a caller
of :meth:`AriClient.call` for longer than that.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import trio

from control.httpclient import HttpClientError
from sip.ari.events import AriEvent, AriProtocolError, parse_event
from sip.ari.events_socket import (
    AriAuthError,
    AriSocketError,
    EventsSocket,
    basic_auth,
    events_url,
)
from sip.ari.http_pool import HttpPool
from sip.ari.requests import AriRequest, AriRequestError, decode_response

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 64 * 1024 * 1024  # a stored recording: ~35 min of 16 kHz mono
EVENTS_IDLE_S = 30.0  # ping after half of this in silence; no answer at all: reconnect


class AriUnavailable(Exception):
    """An ARI REST call got no answer (connection refused, deadline, broken response)."""


def backoff_s(attempt: int, first_s: float = 0.5, cap_s: float = 10.0) -> float:
    """Delay before reconnect ``attempt`` (0-based): 0.5, 1, 2, 4, 8, 10, 10... seconds."""
    return min(cap_s, first_s * float(2 ** min(attempt, 16)))


class AriClient:
    def __init__(
        self, base_url: str, user: str, password: str, app: str, timeout_s: float = 5.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._root = urlsplit(self.base_url).path  # "/ari"
        self.http = HttpPool(self.base_url)  # REST calls share a few kept-alive connections
        self.app = app
        self.timeout_s = timeout_s
        self._auth = basic_auth(user, password)  # the password lives only in this header
        self.connected = False
        self.last_error = "not connected yet"
        self.connects = 0
        self.handler_errors = 0

    async def check_ready(self) -> None:
        """For ``/ready``: raises while the events socket is down (calls cannot enter)."""
        if not self.connected:
            raise AriUnavailable(self.last_error)

    async def call(self, req: AriRequest) -> Any:
        """One REST call; raises :class:`AriRequestError` (Asterisk said no) or
        :class:`AriUnavailable` (no usable answer in time)."""
        headers = {"Authorization": self._auth, "Accept": "application/json"}
        limit = MAX_FILE_BYTES if req.binary else 1024 * 1024
        try:
            resp = await self.http.request(
                req.method, req.target(self._root), headers, self.timeout_s, limit
            )
        except HttpClientError as exc:
            raise AriUnavailable(str(exc)) from None
        try:
            return decode_response(req, resp.status_code, resp.body)
        except AriProtocolError as exc:
            raise AriUnavailable(str(exc)) from None

    async def run(
        self,
        on_connected: Callable[[], Awaitable[None]],
        on_event: Callable[[AriEvent], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Hold the events socket until cancelled. Reports started after the first attempt
        (connected or not: an Asterisk that is down at start-up is retried, and ``/ready``
        says so); raises :class:`AriAuthError` if that first attempt is refused credentials."""
        try:
            await self._run(on_connected, on_event, task_status)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the kept REST connections (the client stays usable: it opens new ones)."""
        await self.http.aclose()

    async def _run(
        self,
        on_connected: Callable[[], Awaitable[None]],
        on_event: Callable[[AriEvent], Awaitable[None]],
        task_status: trio.TaskStatus[None],
    ) -> None:
        url = events_url(self.base_url, self.app)
        attempt = 0
        started = trio.Event()
        while True:
            try:
                sock = await EventsSocket.connect(url, self._auth, self.timeout_s)
            except AriSocketError as exc:
                self.last_error = str(exc)
                if isinstance(exc, AriAuthError) and not started.is_set():
                    raise
                log.warning("ari events socket unavailable", extra={"error": str(exc)})
                _report(started, task_status)
                await trio.sleep(backoff_s(attempt))
                attempt += 1
                continue
            attempt = 0
            try:
                await self._serve(sock, on_connected, on_event, started, task_status)
            except (AriSocketError, AriUnavailable, AriRequestError, AriProtocolError) as exc:
                self.last_error = str(exc)
                log.warning("ari events socket lost", extra={"error": str(exc)})
            finally:
                self.connected = False
                await sock.aclose()
            _report(started, task_status)

    async def _serve(
        self,
        sock: EventsSocket,
        on_connected: Callable[[], Awaitable[None]],
        on_event: Callable[[AriEvent], Awaitable[None]],
        started: trio.Event,
        task_status: trio.TaskStatus[None],
    ) -> None:
        self.connected = True
        self.connects += 1
        self.last_error = ""
        log.info("ari connected", extra={"url": self.base_url, "app": self.app})
        await on_connected()
        _report(started, task_status)
        while True:
            text = await sock.receive(EVENTS_IDLE_S)
            try:
                event = parse_event(text)
            except AriProtocolError as exc:
                log.warning("ari event skipped", extra={"error": str(exc)})
                continue
            try:
                await on_event(event)
            except Exception:  # one event's bug must not take the socket and every call down
                self.handler_errors += 1
                log.exception("ari event handler failed", extra={"event": type(event).__name__})


def _report(started: trio.Event, task_status: trio.TaskStatus[None]) -> None:
    if not started.is_set():
        started.set()
        task_status.started()
