"""A bridge participant on another node: the inter-node media link.

A conference's bridge lives on one node (its holder). A call held by another node joins it
over one WebSocket per participant, speaking the agent link's frames (``proto/frames.proto``):
``Audio`` (16 kHz PCM16, 20 ms) both ways, ``Dtmf`` from the call's node, and ``Hangup`` from
the holder when it takes the participant out (its ``reason`` says where the call goes next:
``agent`` or ``hangup``).

- On the holder, :class:`LinkedParticipant` is the participant: the link's audio goes into its
  bridge port (bounded, drift-trimmed like a leg's), and the port's mix goes out through a
  bounded queue (a slow link drops its own frames, counted; the tick never waits on a socket).
- On the call's node, :class:`RemoteBridge` stands in for the bridge in the call
  (:meth:`media.call.Call.join_bridge`): the call's caller frames go up the link, the mix that
  comes down is the call's playout, as from a local bridge's tick. A link that ends (the holder
  took the participant out, closed, died, or sent nothing for :data:`LINK_SILENT_S`) calls
  ``on_gone`` with where the call goes next.

No mixing happens on the call's node: a remote participant is one port of the one bridge, so
mutes, volumes, talking and the recording are the holder's, as for its own calls.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from media.agent_client import AgentClient, AgentLinkError
from media.bridge import Bridge
from media.bridge_core import PORT_QUEUE_MS, BridgeEnded, BridgeEvent, BridgeFull, BridgePort
from media.leg import LegDtmf
from media.message_socket import MessageSocket, MessageSocketClosed
from media.mixer import MIX_RATE_HZ
from media.peer import PeerEvent
from proto.codec import LinkDecodeError, decode, encode
from proto.messages import Audio, Dtmf, Hangup, LinkFrame

log = logging.getLogger(__name__)

# The holder's tick sends a frame every 20 ms while anyone is in the bridge: 2 s of nothing is
# a holder that died with its box (no RST) or stalled; the call then leaves by on_leave.
LINK_SILENT_S = 2.0
CLOSE_WAIT_S = 1.0  # the holder waits this long for the call's node to close, then closes
LINK_QUEUE_FRAMES = 10  # 200 ms waiting for a slow socket, each way; beyond it frames drop
THEN = ("agent", "hangup")  # where a participant taken out goes (a Hangup frame's reason)

OnGone = Callable[[str], None]


class FrameSocket(Protocol):
    """Whichever socket carries the link: :class:`media.message_socket.MessageSocket` on the
    holder, the agent link's client on the call's node (both send and receive whole frames)."""

    async def send_frame(self, frame: LinkFrame) -> None: ...

    async def receive_frame(self) -> LinkFrame: ...

    async def close(self, reason: str) -> None: ...


class LinkClosed(Exception):
    """The link is gone (closed, broken, or a frame that is not ours)."""


def then_of(reason: str, default: str) -> str:
    """Where the call goes after a ``Hangup`` with ``reason`` (an unknown one: ``default``)."""
    return reason if reason in THEN else default


class _Outbox:
    """Frames for the link, bounded; the socket's writer task drains it."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[LinkFrame](LINK_QUEUE_FRAMES)
        self.dropped_frames = 0

    def put(self, frame: LinkFrame) -> None:
        try:
            self._send.send_nowait(frame)
        except trio.WouldBlock:
            self.dropped_frames += 1
        except trio.ClosedResourceError:
            pass  # the link is over

    async def drain(self, socket: FrameSocket) -> None:
        async for frame in self._receive:
            await socket.send_frame(frame)


async def _until_closed(socket: FrameSocket) -> None:
    """The holder lets the call's node close the link (the client's close, the usual end of a
    WebSocket): Hypercorn 0.18 answering a client's close while the server's own close shuts
    the TCP stream writes on the stream from two tasks at once, and the BusyResourceError it
    raises takes the whole server down (seen: node A died when it ended a conference)."""
    with contextlib.suppress(LinkClosed):
        while True:
            await socket.receive_frame()


async def _try_send(socket: FrameSocket, frame: LinkFrame) -> None:
    with contextlib.suppress(LinkClosed):
        await socket.send_frame(frame)


async def _both_ways(
    outbox: _Outbox, socket: FrameSocket, read: Callable[[], Awaitable[None]]
) -> str:
    """Write the outbox and ``read`` until either ends: "" when ``read`` returned, else why
    the link closed. (A closed link is the usual end of a link, not an error to raise.)"""
    why = ""

    async def until_closed(run: Callable[[], Awaitable[None]]) -> None:
        nonlocal why
        try:
            await run()
        except LinkClosed as exc:
            why = why or str(exc) or "closed"
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(until_closed, lambda: outbox.drain(socket))
        nursery.start_soon(until_closed, read)
    return why


class LinkedParticipant:
    """On the holder: one remote call in ``bridge``, for as long as its link lasts."""

    def __init__(self, bridge: Bridge, participant_id: str, socket: FrameSocket) -> None:
        self.bridge = bridge
        self.participant_id = participant_id
        self._socket = socket
        self._outbox = _Outbox()
        self._scope = trio.CancelScope()
        self._then = ""  # set: the holder took it out, and tells the call where it goes

    def _deliver(self, pcm16: bytes, rate_hz: int) -> None:
        self._outbox.put(Audio(pcm16, rate_hz))

    async def serve(self) -> None:
        """Join the bridge and carry audio until the link ends or :meth:`take_out`. Raises
        :class:`~media.bridge_core.BridgeFull` or ``BridgeEnded`` (the link is closed)."""
        try:
            port = self.bridge.join(self.participant_id, self._deliver)
        except (BridgeFull, BridgeEnded) as exc:
            await self._socket.close(str(exc))
            raise
        why = ""  # the link broke (or spoke nonsense): nobody is going to close it politely
        try:
            with self._scope:
                why = await _both_ways(self._outbox, self._socket, lambda: self._read(port))
                if why:
                    log.info(
                        "conference link closed", extra={"id": self.participant_id, "why": why}
                    )
        finally:
            self.bridge.leave(self.participant_id)
            with trio.CancelScope(shield=True):
                with trio.move_on_after(0 if why else CLOSE_WAIT_S):
                    if self._then:
                        await _try_send(self._socket, Hangup(self._then))
                    await _until_closed(self._socket)
                await self._socket.close(self._then or "left")  # (a no-op once it has closed)

    async def _read(self, port: BridgePort) -> None:
        while True:
            frame = await self._socket.receive_frame()
            if isinstance(frame, Audio):
                port.uplink(frame.pcm16)
            elif isinstance(frame, Dtmf):
                await port.leg_event(LegDtmf(frame.digit, frame.duration_ms))
            elif isinstance(frame, Hangup):
                return  # the call left (hung up, or its node took it out)

    def take_out(self, then: str) -> None:
        """The holder takes the participant out: the call goes to ``then`` (agent, hangup)."""
        self._then = then
        self._scope.cancel()


class _LinkPort(BridgePort):
    """The call's end: its caller frames go up the link instead of into a mixer's queue."""

    def __init__(self, participant_id: str, deliver: Callable[[bytes, int], None], outbox: _Outbox):
        super().__init__(participant_id, deliver)
        self._outbox = outbox

    def uplink(self, pcm16: bytes) -> None:
        self._outbox.put(Audio(pcm16, MIX_RATE_HZ))

    async def leg_event(self, event: PeerEvent) -> None:
        if isinstance(event, LegDtmf):
            self._outbox.put(Dtmf(event.digit, event.duration_ms))


class RemoteBridge(Bridge):
    """On the call's node: the holder's bridge, as the call sees it (one participant: the
    call). Run :meth:`run` in the owner's nursery before the call joins."""

    def __init__(
        self,
        bridge_id: str,
        socket: FrameSocket,
        on_leave: str,
        on_gone: OnGone,
        on_event: Callable[[BridgeEvent], None] | None = None,
    ) -> None:
        super().__init__(bridge_id, tones=False, on_event=on_event)
        self._socket = socket
        self._on_leave = then_of(on_leave, "agent")
        self._on_gone = on_gone
        self._outbox = _Outbox()
        self._port: _LinkPort | None = None
        self._goodbye = False
        self.lost = False  # the link ended without the holder saying so (closed, silent)
        # The holder's first frame: it took the link (its bridge sends a mix every tick). A
        # link it refused (a ticket it never minted: the link landed on another process) closes.
        self.linked = trio.Event()
        self.settled = trio.Event()  # linked, or the link is over: the join knows which at once
        self._told = ""  # where the holder said the call goes

    @property
    def participants(self) -> tuple[str, ...]:
        return (self._port.participant_id,) if self._port is not None else ()

    @property
    def dropped_frames(self) -> int:
        return self._outbox.dropped_frames

    def join(
        self,
        participant_id: str,
        deliver: Callable[[bytes, int], None],
        queue_ms: int = PORT_QUEUE_MS,
        live: bool = True,
    ) -> BridgePort:
        if self.core.ended:
            raise BridgeEnded("the conference's link has ended")
        if self._port is not None:
            raise BridgeFull("a link carries one participant")
        self._port = _LinkPort(participant_id, deliver, self._outbox)
        return self._port

    def leave(self, participant_id: str) -> None:
        """The call left (taken out here, or it hung up): the holder is told, the link ends."""
        if self._port is None or self._port.participant_id != participant_id:
            return
        self._port = None
        self._goodbye = True
        self.report_left(participant_id)
        self.close()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with self._scope:
                task_status.started()
                why = await _both_ways(self._outbox, self._socket, self._receive)
                if why:
                    self.lost = True
                    log.info("conference link lost", extra={"id": self.bridge_id, "why": why})
        finally:
            self.core.ended = True
            self.settled.set()
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                if self._goodbye:  # the call left: the holder hears it from us, not a silence
                    await _try_send(self._socket, Hangup("left"))
                await self._socket.close("left")
        if self._port is not None:  # the link ended first: the call goes where it must
            self._on_gone(self._told or self._on_leave)

    async def _receive(self) -> None:
        """Audio to the call until the holder says where it goes, or the link goes silent."""
        while True:
            with trio.move_on_after(LINK_SILENT_S):
                frame = await self._socket.receive_frame()
                self.linked.set()
                self.settled.set()
                if isinstance(frame, Hangup):
                    self._told = then_of(frame.reason, self._on_leave)
                    return
                if isinstance(frame, Audio) and self._port is not None:
                    self._port.deliver(frame.pcm16, frame.sample_rate_hz)
                continue
            raise LinkClosed(f"nothing from the holder for {LINK_SILENT_S:g} s")


def decode_frame(message: str | bytes) -> LinkFrame:
    """A link message as a frame; :class:`LinkClosed` for anything that is not one of ours."""
    if isinstance(message, str):
        raise LinkClosed("text message on a conference link")
    try:
        frame = decode(message)
    except LinkDecodeError as exc:
        raise LinkClosed(f"bad frame: {exc}") from None
    if frame is None:
        raise LinkClosed("unknown frame on a conference link")
    return frame


class MessageFrames:
    """The holder's end: a :class:`media.message_socket.MessageSocket` as a FrameSocket."""

    def __init__(self, socket: MessageSocket) -> None:
        self._socket = socket

    async def send_frame(self, frame: LinkFrame) -> None:
        try:
            await self._socket.send(encode(frame))
        except MessageSocketClosed as exc:
            raise LinkClosed(str(exc)) from None

    async def receive_frame(self) -> LinkFrame:
        try:
            return decode_frame(await self._socket.receive())
        except MessageSocketClosed as exc:
            raise LinkClosed(str(exc)) from None

    async def close(self, reason: str) -> None:
        with contextlib.suppress(MessageSocketClosed):
            await self._socket.close(1000, reason[:100])


class ClientFrames:
    """The call's end: the agent link's WebSocket client (:mod:`media.agent_client`), which
    speaks the same frames, as a FrameSocket."""

    def __init__(self, client: AgentClient) -> None:
        self._client = client

    @classmethod
    async def connect(cls, url: str, timeout_s: float) -> ClientFrames:
        try:
            return cls(await AgentClient.connect(url, timeout_s))
        except AgentLinkError as exc:
            raise LinkClosed(f"cannot reach the conference's node: {exc}") from None

    async def send_frame(self, frame: LinkFrame) -> None:
        try:
            await self._client.send(frame)
        except AgentLinkError as exc:
            raise LinkClosed(str(exc)) from None

    async def receive_frame(self) -> LinkFrame:
        try:
            return await self._client.recv()
        except AgentLinkError as exc:
            raise LinkClosed(str(exc)) from None

    async def close(self, reason: str) -> None:
        await self._client.aclose(1000, reason)
