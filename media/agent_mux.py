"""The multiplexed agent link, the media core's end: every call of this process to one of
callbridge's own agent processes over one WebSocket (``serve --agent-link mux``).

Framing is :mod:`proto.mux` (records by channel, one channel per call's link, many records per
message). Per connection there is **one reader** for all calls: it decodes each record and hands
the call's frame on at once; agent speech goes straight to the call's playout from the reader's
task (:attr:`MuxLink.audio_sink`), every other frame to the call's own link reader, in order.
Writes are **coalesced per tick**: a call's frame is added to the connection's batch, and the
media tick (:mod:`media.tick`) sends everything added within :data:`FLUSH_S` of the first as
one message, in a wake-up it mostly makes anyway to pace calls' frames. Each message costs a
write here, a wake-up and a read in the agent, and its answer the same back: per scheduling
round, with calls' frames arriving a few at a time, that was most of the link's cost.

A :class:`MuxLink` offers what :class:`media.agent_client.AgentClient` offers
:class:`media.agent_peer.AgentPeer`, with the same semantics: a bounded queue per call (a call
whose frames are not written yet is told to wait, and its peer drops and counts caller audio
as it does today), deadlines on stuck writes, and a failed connection failing each of its calls
with :class:`AgentLinkError` (each call then ends its usual way). A bad record for one call ends
that call's link only. Connections are per Trio run and per agent URL (one per agent process
behind its own address); a failed one is forgotten and the next call connects afresh.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from media.agent_client import AgentClient, AgentLinkError
from media.audio import LINK_RATE_HZ
from media.config import MediaConfig
from media.tick import batching, current_tick
from proto import messages as m
from proto import mux
from proto.codec import LinkDecodeError, decode, encode
from proto.stock_pipecat import split_agent_url

log = logging.getLogger(__name__)

INBOX_FRAMES = 500
"""Agent frames other than speech waiting for one call's link reader; beyond, that call fails."""
PING_GAP_S = 5.0  # the calls' keep-alives share the connection: at most one ping per gap
FLUSH_S = 0.001
"""How long a record may wait for others before its message goes: at most ~1000 messages a
second each way whatever the number of calls, 1 ms added to a 20 ms frame's way. Measured at
100 pinned echo calls against every scheduling round (0) and 4 ms, alternated twice in one run:
serve's CPU per frame 0.81-0.88x of 0's at 1 ms, 1.01-1.19x at 4 ms (bench/RESULTS.md)."""
FLUSH_SWITCH = "CALLBRIDGE_MUX_FLUSH_MS"  # benchmarks compare intervals in one run
CLOSE_PROTOCOL_ERROR = 1002


class MuxSocket(AgentClient):
    """The connection itself: whole messages in and out, no frame decoding."""

    MAX_MESSAGE_BYTES = mux.MAX_BATCH_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # (AgentClient's)
        super().__init__(*args, **kwargs)
        self.messages: deque[bytes] = deque()
        self.last_ping_time = -1e9

    async def abort(self) -> None:
        await trio.aclose_forcefully(self._stream)

    def _decode(self, message: bytes) -> None:
        self.messages.append(message)

    async def receive_messages(self) -> None:
        """Read until at least one message is in :attr:`messages`; raises at the end."""
        while not self.messages:
            await self._receive_more()

    async def write(self, message: bytes) -> None:
        self._ws.send_binary(message)
        await self._flush()


class MuxLink:
    """One call's link over an :class:`AgentMux`."""

    agent_protocol = "callbridge"
    has_unsent = False  # what the kernel did not take is the connection's, not the call's

    def __init__(self, conn: AgentMux, channel: int, queue_bytes: int) -> None:
        self.channel = channel
        self.audio_sink: Callable[[m.Audio], None] | None = None
        self.closed_by_agent = False
        self.queued_bytes = 0  # this call's records the connection has not written yet
        self._conn = conn
        self._queue_bytes = queue_bytes
        self._pending: deque[m.LinkFrame] = deque()
        self._wake = trio.Event()
        self._error: AgentLinkError | None = None
        self._closed = False

    @property
    def last_receive_time(self) -> float:
        return self._conn.socket.last_receive_time

    # ---- media core -> agent --------------------------------------------------------------

    def send_nowait(self, frame: m.LinkFrame) -> bool:
        self._check_open()
        if self.queued_bytes >= self._queue_bytes:
            return False
        self._conn.add(self, mux.frame_record(self.channel, encode(frame)))
        return True

    async def send(self, frame: m.LinkFrame) -> None:
        self._check_open()
        while self.queued_bytes >= self._queue_bytes:  # the connection is behind: wait for it
            await self._conn.wait_written()
            self._check_open()
        self._conn.add(self, mux.frame_record(self.channel, encode(frame)), urgent=True)
        await trio.lowlevel.checkpoint()

    async def flush(self) -> None:
        self._check_open()
        await trio.lowlevel.checkpoint()

    async def ping(self) -> None:
        self._check_open()
        await self._conn.ping()

    def _check_open(self) -> None:
        if self._error is not None:  # (its reason is the link reader's to report, once)
            raise AgentLinkError("closed", str(self._error))
        if self._closed:
            raise AgentLinkError("closed", "link is not open")

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        if not self._closed:
            self._closed = True
            self._conn.close_channel(self, code, reason)
        await trio.lowlevel.checkpoint()

    # ---- agent -> media core --------------------------------------------------------------

    async def recv(self) -> m.LinkFrame:
        while not self._pending:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise AgentLinkError("closed", "link closed")
            self._wake = trio.Event()
            await self._wake.wait()
        return self._pending.popleft()

    def deliver(self, frame: m.LinkFrame) -> None:
        """From the connection's reader: speech straight to the playout when nothing is
        queued ahead of it, the rest (in order) to the call's link reader."""
        sink = self.audio_sink
        if sink is not None and not self._pending and type(frame) is m.Audio:
            sink(frame)
            return
        if len(self._pending) >= INBOX_FRAMES:
            self.fail(AgentLinkError("overflow", "the call's link reader is not keeping up"))
            return
        self._pending.append(frame)
        self._wake.set()

    def fail(self, error: AgentLinkError) -> None:
        """No more frames after those already queued; ``error`` is raised after them."""
        if self._error is None:
            self._error = error
            self._wake.set()
            self._conn.forget(self)


class AgentMux:
    """One connection to one agent process, shared by every call of this Trio run to it."""

    def __init__(self, url: str, socket: MuxSocket, send_timeout_s: float) -> None:
        self.url = url
        self.socket = socket
        self.stray_records = 0  # records for a call already over: its close crossed ours
        self.bad_records = 0
        self._send_timeout_s = send_timeout_s
        self._links: dict[int, MuxLink] = {}
        self._next_channel = 1
        self._out = mux.Batcher()
        self._dirty: list[MuxLink] = []  # links with records in _out or in a write in flight
        self._flush_at: float | None = None  # the tick's slot for the next write (Trio time)
        self._flush_s = float(os.environ.get(FLUSH_SWITCH, FLUSH_S * 1000)) / 1000
        self._stuck = trio.Event()  # set: a write the kernel did not take at once waits
        self._written = trio.Event()
        self._error: AgentLinkError | None = None

    @property
    def failed(self) -> bool:
        return self._error is not None

    def open_link(self, queue_bytes: int) -> MuxLink:
        if self._error is not None:
            raise self._error
        link = MuxLink(self, self._next_channel, queue_bytes)
        self._next_channel += 1
        self._links[link.channel] = link
        return link

    def forget(self, link: MuxLink) -> None:
        self._links.pop(link.channel, None)

    def close_channel(self, link: MuxLink, code: int, reason: str) -> None:
        if self._links.pop(link.channel, None) is not None and self._error is None:
            self.add(link, mux.close_record(link.channel, code, reason), urgent=True)

    # ---- writing: one message per tick ----------------------------------------------------

    def add(self, link: MuxLink, record: bytes, urgent: bool = False) -> None:
        """Caller audio waits up to :data:`FLUSH_S` for company; ``urgent`` records (a call's
        start, its other frames, its close) go in this scheduling round, with what waits."""
        if self._error is not None:
            raise self._error
        self._out.add(record)
        if link.queued_bytes == 0:
            self._dirty.append(link)
        link.queued_bytes += len(record)
        due = trio.current_time() + (0.0 if urgent else self._flush_s)
        if self._flush_at is None or due < self._flush_at:
            self._flush_at = due
            current_tick().at(due, self)

    def on_tick(self, slot: float) -> None:
        if slot != self._flush_at:
            return  # a later flush, made earlier by an urgent record, has been done
        self._flush_at = None
        if self._stuck.is_set() or self._error is not None:
            return  # the writer takes what was added once its write is through
        try:
            messages = self._out.take()
            for at, message in enumerate(messages):
                if not self.socket.send_message_nowait(message) or self.socket.has_unsent:
                    self._stall(messages[at + 1 :])
                    return
        except AgentLinkError as exc:
            self._fail(exc)
            return
        self._credit()

    def _stall(self, rest: list[bytes]) -> None:
        for message in rest:  # back in front of anything added since (order is the stream's)
            self._out.add(message)
        self._stuck.set()

    def _credit(self) -> None:
        for link in self._dirty:
            link.queued_bytes = 0
        self._dirty.clear()
        self._written.set()
        self._written = trio.Event()

    async def wait_written(self) -> None:
        """Until the connection's writes catch up (or it fails)."""
        if self._error is not None:
            raise self._error
        await self._written.wait()

    async def ping(self) -> None:
        now = trio.current_time()
        if now - self.socket.last_ping_time >= PING_GAP_S and not self._stuck.is_set():
            self.socket.last_ping_time = now
            await self.socket.ping()

    async def _writer(self) -> None:
        while True:
            await self._stuck.wait()
            with trio.fail_after(self._send_timeout_s):
                await self.socket.flush()
                while self._out:
                    for message in self._out.take():
                        await self.socket.write(message)
            self._stuck = trio.Event()
            self._credit()

    # ---- reading: one reader for every call -----------------------------------------------

    async def _reader(self) -> None:
        while True:
            await self.socket.receive_messages()
            with batching():  # every call's speech of these messages resampled in one pass
                while self.socket.messages:
                    for record in mux.parse_batch(self.socket.messages.popleft()):
                        self._on_record(record)

    def _on_record(self, record: mux.MuxRecord) -> None:
        link = self._links.get(record.channel)
        if isinstance(record, mux.BadRecord):
            self.bad_records += 1
            log.warning("bad record on the agent link", extra={"channel": record.channel,
                                                              "reason": record.reason})  # fmt: skip
            if link is not None and record.fatal:  # (else: a newer agent's kind, skipped)
                self._refuse(link, f"bad record: {record.reason}")
        elif link is None:
            self.stray_records += 1
        elif isinstance(record, mux.CloseRecord):
            link.closed_by_agent = True
            link.fail(AgentLinkError("closed", f"agent closed the link (code {record.code})"))
        else:
            self._on_frame(link, record.payload)

    def _on_frame(self, link: MuxLink, payload: bytes) -> None:
        try:
            frame = decode(payload)
        except LinkDecodeError as exc:
            self._refuse(link, f"bad frame: {exc}")
            return
        if frame is None:
            return  # a kind this core does not know (a newer agent)
        try:
            link.deliver(frame)
        except Exception:  # one call's bug must not stop every call's audio
            log.exception("agent frame failed")
            link.fail(AgentLinkError("internal", "delivering a frame failed"))

    def _refuse(self, link: MuxLink, reason: str) -> None:
        link.fail(AgentLinkError("bad_frame", reason))
        self.add(
            link, mux.close_record(link.channel, CLOSE_PROTOCOL_ERROR, reason[:100]), urgent=True
        )

    # ---- life -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Until the connection fails; then every call on it fails (never raises)."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._guarded, self._reader, nursery.cancel_scope)
                nursery.start_soon(self._guarded, self._writer, nursery.cancel_scope)
        finally:
            self._fail(AgentLinkError("closed", "connection ended"))
            with trio.CancelScope(shield=True):
                await self.socket.abort()

    async def _guarded(
        self, part: Callable[[], Awaitable[None]], connection: trio.CancelScope
    ) -> None:
        """Run the reader or the writer; when either ends, the connection and its calls do."""
        try:
            await part()
        except AgentLinkError as exc:
            self._fail(exc)
        except trio.TooSlowError:
            self._fail(AgentLinkError("send_timeout", "the agent stopped reading"))
        except Exception as exc:  # a system task must not raise: it would end the whole run
            log.exception("agent link connection failed")
            self._fail(AgentLinkError("internal", type(exc).__name__))
        connection.cancel()

    def _fail(self, error: AgentLinkError) -> None:
        if self._error is not None:
            return
        self._error = error
        _forget_mux(self)
        for link in list(self._links.values()):
            link.fail(error)
        self._links.clear()
        self._written.set()


class _Connecting:
    """A connect in progress, which the calls that come meanwhile wait for."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: AgentLinkError | None = None


_MUXES: trio.lowlevel.RunVar[dict[str, AgentMux | _Connecting]] = trio.lowlevel.RunVar("agent_mux")


def _registry() -> dict[str, AgentMux | _Connecting]:
    try:
        return _MUXES.get()
    except LookupError:
        found: dict[str, AgentMux | _Connecting] = {}
        _MUXES.set(found)
        return found


def _forget_mux(conn: AgentMux) -> None:
    registry = _registry()
    if registry.get(conn.url) is conn:
        del registry[conn.url]


async def open_mux_link(
    url: str, timeout_s: float, send_timeout_s: float, queue_bytes: int
) -> MuxLink:
    """A call's link over this run's connection to ``url``, connecting it first if needed
    (calls that come during a connect wait for it, and share its failure); raises
    :class:`AgentLinkError`."""
    registry = _registry()
    while True:
        found = registry.get(url)
        if isinstance(found, AgentMux):
            return found.open_link(queue_bytes)
        if found is None:
            conn = await _connect(registry, url, timeout_s, send_timeout_s)
            return conn.open_link(queue_bytes)
        await found.done.wait()
        if found.error is not None:
            raise found.error
        # (connected, or the connecting call was cancelled: look again)


async def _connect(
    registry: dict[str, AgentMux | _Connecting], url: str, timeout_s: float, send_timeout_s: float
) -> AgentMux:
    pending = _Connecting()
    registry[url] = pending
    try:
        socket = await MuxSocket.connect(_mux_url(url), timeout_s)
    except AgentLinkError as exc:
        pending.error = exc
        raise
    finally:
        del registry[url]
        pending.done.set()
    conn = AgentMux(url, socket, send_timeout_s)
    registry[url] = conn
    trio.lowlevel.spawn_system_task(conn.run, name=f"agent link {url}")
    return conn


def _mux_url(url: str) -> str:
    connect_url, agent_protocol = split_agent_url(url)
    if agent_protocol != "callbridge":
        raise AgentLinkError("bad_url", "a multiplexed link needs callbridge's own agent")
    return connect_url.rstrip("/") + mux.MUX_PATH


async def connect_link(url: str, cfg: MediaConfig) -> AgentClient | MuxLink:
    """A call's agent link to ``url``: its own WebSocket (``--agent-link ws``, what a stock
    pipecat agent speaks) or a channel of the shared connection (``mux``; ``auto`` is mux to
    serve's own agents, :attr:`MediaConfig.link_kind`)."""
    if cfg.link_kind == "mux":
        queue_bytes = cfg.uplink_queue_ms * LINK_RATE_HZ * 2 // 1000
        return await open_mux_link(
            url, cfg.agent_connect_timeout_s, cfg.leg_send_timeout_s, queue_bytes
        )
    return await AgentClient.connect(url, cfg.agent_connect_timeout_s)
