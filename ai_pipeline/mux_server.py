"""The agent's end of the multiplexed agent link: every call of one media worker over one
WebSocket (:mod:`proto.mux`), each call still a :data:`~ai_pipeline.link.CallHandler` with an
:class:`~ai_pipeline.link.AgentLink` of its own, exactly as over a per-call WebSocket.

One reader task for the connection hands each record to its call's bounded inbox; one writer
task sends what every call's handler sent in one round of the event loop as one message. A call
that does not keep up loses audio (counted), never another call's frames; a handler that fails
ends its own call with an ``Error`` frame and a close, as :mod:`ai_pipeline.server` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ai_pipeline.link import CallHandler, LinkClosed, run_handler
from proto import mux
from proto.codec import LinkDecodeError, decode, encode
from proto.messages import Audio, CallStart, LinkFrame

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INTERNAL_ERROR = 1011
INBOX_FRAMES = 250
"""Frames waiting for one call's handler (5 s of audio); beyond it its audio is dropped."""
OUTBOX_HIGH_BYTES = 4 * mux.MAX_BATCH_BYTES
"""Bytes waiting for the connection above which a sending handler waits (backpressure)."""


class MuxCallLink:
    """:class:`ai_pipeline.link.AgentLink` for one call of a multiplexed connection."""

    def __init__(self, conn: MuxConnection, channel: int) -> None:
        self._conn = conn
        self.channel = channel
        self._inbox: deque[LinkFrame] = deque()
        self._wake = asyncio.Event()
        self._closed: str | None = None  # why: no more frames after those in the inbox
        self.dropped_frames = 0

    def deliver(self, frame: LinkFrame) -> None:
        if len(self._inbox) >= INBOX_FRAMES and isinstance(frame, Audio):
            self.dropped_frames += 1  # this call's handler is behind: its audio waits no more
            return
        self._inbox.append(frame)
        self._wake.set()

    def end(self, reason: str) -> None:
        if self._closed is None:
            self._closed = reason
            self._wake.set()

    async def recv(self) -> LinkFrame:
        while not self._inbox:
            if self._closed is not None:
                raise LinkClosed(self._closed)
            self._wake.clear()
            await self._wake.wait()
        return self._inbox.popleft()

    async def send(self, frame: LinkFrame) -> None:
        if self._closed is not None:
            raise LinkClosed(self._closed)
        await self._conn.send_record(mux.frame_record(self.channel, encode(frame)))


class MuxConnection:
    """One media worker's connection: its calls, its reader and its writer."""

    def __init__(self, ws: ServerConnection, handler: CallHandler) -> None:
        self._ws = ws
        self._handler = handler
        self._table = mux.ChannelTable()
        self._calls: dict[int, MuxCallLink] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._out = mux.Batcher()
        self._out_bytes = 0
        self._kick = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._gone: str | None = None
        self.calls_active = 0
        self.stray_records = 0
        self.bad_records = 0

    async def send_record(self, record: bytes) -> None:
        if self._gone is not None:
            raise LinkClosed(self._gone)
        self._out.add(record)
        self._out_bytes += len(record)
        self._kick.set()
        if self._out_bytes > OUTBOX_HIGH_BYTES:
            self._drained.clear()
            await self._drained.wait()
            if self._gone is not None:
                raise LinkClosed(self._gone)

    async def run(self) -> None:
        writer = asyncio.create_task(self._writer())
        try:
            await self._reader()
        finally:
            self._gone = self._gone or "media core closed the connection"
            for link in self._calls.values():
                link.end(self._gone)
            self._drained.set()  # (a handler waiting to send learns that the link is gone)
            for task in list(self._tasks):  # handlers see LinkClosed and end on their own
                with contextlib.suppress(Exception):
                    await task
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _reader(self) -> None:
        while True:
            try:
                message = await self._ws.recv()
            except ConnectionClosed as exc:
                self._gone = f"media core connection closed: {exc}"
                return
            if isinstance(message, str):
                self._gone = "text message on the multiplexed link"
                await self._ws.close(CLOSE_PROTOCOL_ERROR, self._gone)
                return
            for record in mux.parse_batch(message):
                self._on_record(record)

    def _on_record(self, record: mux.MuxRecord) -> None:
        if isinstance(record, mux.BadRecord):
            self.bad_records += 1
            log.warning("bad multiplexed record", extra={"channel": record.channel,
                                                        "reason": record.reason})  # fmt: skip
            link = self._calls.get(record.channel)
            if link is not None and record.fatal:  # that call lost a frame it needs
                self._end_call(link, CLOSE_PROTOCOL_ERROR, f"bad record: {record.reason}")
            return
        state = self._table.classify(record.channel)
        if state == "stray":
            self.stray_records += 1  # a call already over (its close crossed ours)
        elif isinstance(record, mux.CloseRecord):
            link = self._calls.pop(record.channel, None)
            if link is not None:  # (its handler sees LinkClosed once it has read the rest)
                self._table.closed(record.channel)
                link.end(f"media core closed the call ({record.code})")
            self._table.seen(record.channel)
        elif state == "new":
            self._open(record.channel, record.payload)
        else:
            self._frame(self._calls[record.channel], record.payload)

    def _open(self, channel: int, payload: bytes) -> None:
        self._table.seen(channel)
        try:
            start = decode(payload)
        except LinkDecodeError:
            start = None
        if not isinstance(start, CallStart):
            self._send_close(channel, CLOSE_PROTOCOL_ERROR, "expected call_start")
            return
        self._table.opened(channel)
        link = MuxCallLink(self, channel)
        self._calls[channel] = link
        task = asyncio.create_task(self._run_call(start, link))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _frame(self, link: MuxCallLink, payload: bytes) -> None:
        try:
            frame = decode(payload)
        except LinkDecodeError as exc:
            self._end_call(link, CLOSE_PROTOCOL_ERROR, f"bad frame: {exc}")
            return
        if frame is not None:  # (unknown kinds: a newer media core)
            link.deliver(frame)

    def _end_call(self, link: MuxCallLink, code: int, reason: str) -> None:
        link.end(reason)
        self._forget(link.channel, code, reason)

    def _forget(self, channel: int, code: int, reason: str) -> None:
        if self._calls.pop(channel, None) is not None:
            self._table.closed(channel)
            self._send_close(channel, code, reason)

    def _send_close(self, channel: int, code: int, reason: str) -> None:
        if self._gone is None:
            record = mux.close_record(channel, code, reason)
            self._out.add(record)
            self._out_bytes += len(record)
            self._kick.set()

    async def _run_call(self, start: CallStart, link: MuxCallLink) -> None:
        self.calls_active += 1
        code, reason = CLOSE_NORMAL, ""
        try:
            if not await run_handler(self._handler, start, link):
                code, reason = CLOSE_INTERNAL_ERROR, "agent failed"
        finally:
            self.calls_active -= 1
            if link.dropped_frames:
                log.warning("agent call fell behind", extra={"call_id": start.call_id,
                            "dropped_frames": link.dropped_frames})  # fmt: skip
            link.end("call over")
            self._forget(link.channel, code, reason)

    async def _writer(self) -> None:
        try:
            while True:
                await self._kick.wait()
                self._kick.clear()
                messages = self._out.take()
                for message in messages:
                    await self._ws.send(message)
                self._out_bytes -= sum(map(len, messages))
                if self._out_bytes <= OUTBOX_HIGH_BYTES:
                    self._drained.set()
        except ConnectionClosed as exc:
            self._gone = f"media core connection closed: {exc}"
            for link in self._calls.values():
                link.end(self._gone)
            self._drained.set()
