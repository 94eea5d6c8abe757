"""A call leg over RTP/UDP: the thin Trio layer over :class:`media.rtp.session.RtpSession`.

One UDP socket per call, bound to an even port from a configured range (RFC 3550 11: RTP on
even ports, RTCP on the next odd one unless muxed, RFC 5761). :meth:`RtpLeg.receive` both reads
datagrams and runs the jitter buffer's 20 ms playout tick, so the leg needs no task of its own:
the call's reader drives it. Arrival and playout times come from the Trio clock and go into the
session as milliseconds; only this module knows about sockets and clocks.

Outbound, the core's 20 ms frames go through a :class:`media.rtp.repacketizer.Repacketizer`
into packets of the negotiated ptime; a packet whose time lies between two frames (30 ms
packets from 20 ms frames) is sent by the same reader loop, which wakes for it.

RTP has no hangup of its own (SIP's BYE is another layer's): an RTCP BYE from the latched peer
ends the leg, and so does silence on the socket for ``idle_timeout_s``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import socket
import time
from dataclasses import replace

import trio

from media.audio import FRAME_MS, pcm16_bytes_per_frame
from media.hooks import LegCannotDo
from media.leg import LegAudio, LegDtmf, LegError, LegEvent, LegHangup
from media.rtp.dtmf import DtmfError
from media.rtp.events import DtmfReceived, PeerBye, SessionEvent, SourceChanged, SourceLatched
from media.rtp.repacketizer import Repacketizer
from media.rtp.session import RtpSession, RtpSessionConfig

log = logging.getLogger(__name__)

_MAX_DATAGRAM = 2048  # G.711 at 60 ms is 480 bytes of payload; anything bigger is not ours
_NTP_UNIX_OFFSET_S = 2_208_988_800  # 1900-01-01 to 1970-01-01
_BIND_ATTEMPTS = 50
READS_PER_CHECKPOINT = 8  # datagrams read in a row before yielding to other calls
_RTCP_DRAIN_EVERY_S = 0.2  # reports come every few seconds: no need to look every 20 ms


def ntp_timestamp(unix_s: float) -> int:
    """64-bit NTP timestamp (RFC 3550 4) of a Unix time, for sender reports."""
    return int((unix_s + _NTP_UNIX_OFFSET_S) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


async def bind_udp_pair(
    host: str, port_min: int, port_max: int, with_rtcp: bool
) -> tuple[trio.socket.SocketType, socket.socket | None]:
    """Bind an even RTP port (and the odd one above it for RTCP) at random in the range.

    The RTCP socket is a plain non-blocking one: at one report per 5 s it is drained on the
    playout tick, which spares the leg a second reader task.
    """
    if not 0 < port_min <= port_max <= 65534:
        raise ValueError(f"bad RTP port range {port_min}-{port_max}")
    evens = range(port_min + port_min % 2, port_max + 1, 2)
    if not evens:
        raise ValueError(f"no even port in {port_min}-{port_max}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in random.sample(evens, min(len(evens), _BIND_ATTEMPTS)):
        rtp = trio.socket.socket(family, socket.SOCK_DGRAM)
        rtcp = socket.socket(family, socket.SOCK_DGRAM) if with_rtcp else None
        try:
            await rtp.bind((host, port))
            if rtcp is not None:
                rtcp.setblocking(False)
                rtcp.bind((host, port + 1))
        except OSError:
            rtp.close()
            if rtcp is not None:
                rtcp.close()
            continue
        return rtp, rtcp
    raise LegError("no_port", f"no free RTP port pair in {port_min}-{port_max}")


class RtpLeg:
    kind = "rtp"
    self_paced = False  # RTP peers play what arrives: the call paces, 20 ms per packet

    def __init__(
        self,
        sock: trio.socket.SocketType,
        session: RtpSession,
        *,
        rtcp_sock: socket.socket | None = None,
        remote_rtcp_port: int | None = None,
        idle_timeout_s: float = 5.0,
        rtcp_interval_s: float = 5.0,
    ) -> None:
        self.session = session
        self.rate_hz = session.rate_hz  # 8 kHz for G.711, 16 kHz for G.722
        self._sock = sock
        # The same socket as a plain non-blocking one, for the per-packet path: a read that finds
        # a datagram waiting and every send skip Trio's checkpoint round (media/fastio.py says
        # why); only a read that must wait goes through Trio (wait_readable). Detached at hangup.
        self._raw = socket.socket(sock.family, sock.type, fileno=sock.fileno())
        self._raw.setblocking(False)
        self._reads_in_a_row = 0
        self._rtcp_sock = rtcp_sock
        self._remote_rtcp_port = remote_rtcp_port  # SDP a=rtcp; else the RTP port + 1
        self._rtcp_latched: tuple[str, int] | None = None
        self._idle_timeout_s = idle_timeout_s
        self._rtcp_interval_s = rtcp_interval_s
        self._frame_s = FRAME_MS / 1000  # the playout tick: the core takes 20 ms frames
        self._ptime_s = session.config.ptime_ms / 1000
        self._outbound = Repacketizer(session.rate_hz, session.config.ptime_ms)
        self._events: collections.deque[LegEvent] = collections.deque()
        self._origin_s = trio.current_time()
        self._next_tick_s = self._origin_s
        self._next_rtcp_s = self._origin_s + rtcp_interval_s
        self._next_rtcp_drain_s = self._origin_s
        self._last_heard_s = self._origin_s
        self._dtmf_active = False
        self.held = False  # put on hold by signalling: send nothing, expect nothing
        self._closed = False
        self._hung_up = False
        self.send_errors = 0
        self.unsent_packets = 0  # no address to send to yet (no SDP, nothing latched)

    @classmethod
    async def open(
        cls,
        config: RtpSessionConfig,
        *,
        host: str = "127.0.0.1",
        port_min: int = 10_000,
        port_max: int = 20_000,
        rtcp_mux: bool = True,
        remote_rtcp_port: int | None = None,
        idle_timeout_s: float = 5.0,
        rtcp_interval_s: float = 5.0,
    ) -> RtpLeg:
        sock, rtcp_sock = await bind_udp_pair(host, port_min, port_max, with_rtcp=not rtcp_mux)
        return cls(
            sock,
            RtpSession(config),
            rtcp_sock=rtcp_sock,
            remote_rtcp_port=remote_rtcp_port,
            idle_timeout_s=idle_timeout_s,
            rtcp_interval_s=rtcp_interval_s,
        )

    @property
    def local_address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def _ms(self, trio_time_s: float) -> float:
        return (trio_time_s - self._origin_s) * 1000

    async def receive(self) -> LegEvent:
        if self._closed or self._hung_up:
            raise LegError("receive_after_hangup")
        while not self._events:
            now = trio.current_time()
            self._send_due(now)
            if now >= self._next_tick_s:
                # Keep the 20 ms grid; after a long stall, restart it rather than burst.
                behind = now - self._next_tick_s > 5 * self._frame_s
                self._next_tick_s = (now if behind else self._next_tick_s) + self._frame_s
                await self._maybe_report(now)
                if self._rtcp_sock is not None and now >= self._next_rtcp_drain_s:
                    self._next_rtcp_drain_s = now + _RTCP_DRAIN_EVERY_S
                    self._drain_rtcp(now)
                pcm16 = self.session.poll(self._ms(now))
                if pcm16 is not None:
                    return LegAudio(pcm16)
                continue
            if now - self._last_heard_s > self._idle_timeout_s and not self.held:
                raise LegError("idle_timeout", f"no RTP for {self._idle_timeout_s} s")
            send_at = self._outbound.next_due_s
            await self._read_until(self._next_tick_s if send_at is None else
                                   min(self._next_tick_s, send_at))  # fmt: skip
        event = self._events.popleft()
        self._hung_up = isinstance(event, LegHangup)  # once, then the leg is done
        return event

    def push_event(self, event: LegEvent) -> None:
        """An event from the signalling layer (SIP BYE, INFO DTMF), delivered at the next tick."""
        self._events.append(event)

    def set_hold(self, held: bool) -> None:
        """SIP hold (RFC 3264 8.4): while held, no media is sent and silence is not an error."""
        self.held = held
        self._last_heard_s = trio.current_time()
        self._outbound.clear()

    def move_remote(self, remote: tuple[str, int]) -> None:
        """A re-INVITE moved the peer: send to the new address, latch onto its next source."""
        if remote != self.session.config.remote:
            self.session.config = replace(self.session.config, remote=remote)
            self.session.relatch()

    async def _read_until(self, deadline_s: float) -> None:
        """Read one datagram, waiting for it until ``deadline_s`` at most."""
        received = await self._receive_datagram(deadline_s)
        if received is None:
            return
        data, source = received
        arrival = trio.current_time()
        packets_before = self.session.counters.packets_in
        events = self.session.receive_datagram(data, source, self._ms(arrival))
        if self.session.counters.packets_in != packets_before or events:
            self._last_heard_s = arrival
        for event in events:
            self._on_session_event(event)

    async def _receive_datagram(self, deadline_s: float) -> tuple[bytes, tuple[str, int]] | None:
        waited = False
        while True:
            try:
                data, source = self._raw.recvfrom(_MAX_DATAGRAM)
            except BlockingIOError:
                if waited:
                    return None
                self._reads_in_a_row = 0
                with trio.move_on_at(deadline_s) as scope:
                    try:
                        await trio.lowlevel.wait_readable(self._raw)
                    except trio.ClosedResourceError as exc:
                        raise LegError("closed", f"RTP socket: {exc!r}") from None
                waited = True
                if scope.cancelled_caught:
                    return None
                continue
            except ConnectionError:
                return None  # an ICMP error surfacing on the socket: not the caller's audio
            except OSError as exc:
                raise LegError("closed", f"RTP socket: {exc!r}") from None
            self._reads_in_a_row += 1
            if self._reads_in_a_row >= READS_PER_CHECKPOINT:  # a flood cannot hog the loop
                self._reads_in_a_row = 0
                await trio.lowlevel.checkpoint()
            return data, (str(source[0]), int(source[1]))

    def _drain_rtcp(self, now: float) -> None:
        """Read what the separate RTCP port holds (a few reports at most) without waiting."""
        for _ in range(8):
            if self._rtcp_sock is None:
                return
            try:
                data, source = self._rtcp_sock.recvfrom(_MAX_DATAGRAM)
            except OSError:  # BlockingIOError: empty; ICMP errors: nothing for us either
                return
            address = (str(source[0]), int(source[1]))
            rejected = sum(self.session.counters.rejected.values())
            events = self.session.receive_rtcp_datagram(data, address, self._ms(now))
            if sum(self.session.counters.rejected.values()) == rejected:
                self._rtcp_latched = address  # symmetric RTCP, as for RTP
            for event in events:
                self._on_session_event(event)

    def _on_session_event(self, event: SessionEvent) -> None:
        if isinstance(event, DtmfReceived):
            self._events.append(LegDtmf(event.digit, event.duration_ms))
        elif isinstance(event, PeerBye):
            self._events.append(LegHangup(f"RTCP BYE {event.reason}".strip()))
        elif isinstance(event, SourceLatched | SourceChanged):
            log.info("rtp leg %s: %s", self.local_address, event)

    def _sendto(self, data: bytes, to: tuple[str, int]) -> None:
        try:
            self._raw.sendto(data, to)
        except OSError:  # a full buffer (BlockingIOError) included: never wait for UDP
            self.send_errors += 1  # UDP is lossy by nature: count, do not end the call

    def _send_packets(self, packets: list[bytes]) -> None:
        remote = self.session.remote
        if remote is None:
            self.unsent_packets += len(packets)
            return
        for packet in packets:
            self._sendto(packet, remote)

    async def _maybe_report(self, now: float, bye: str | None = None) -> None:
        remote = self.session.remote
        if remote is None or (bye is None and now < self._next_rtcp_s):
            return
        self._next_rtcp_s = now + self._rtcp_interval_s
        report = self.session.build_report(self._ms(now), ntp_timestamp(time.time()), bye=bye)
        if self._rtcp_sock is not None:
            port = self._remote_rtcp_port or remote[1] + 1
            try:
                self._rtcp_sock.sendto(report, self._rtcp_latched or (remote[0], port))
            except OSError:  # a full buffer included: a report is not worth waiting for
                self.send_errors += 1
        else:
            self._sendto(report, remote)

    async def send_audio(self, pcm16: bytes) -> None:
        if self._closed:
            raise LegError("closed", "send after hangup")
        if self._dtmf_active or self.held:
            return  # key presses replace audio while they last (the phone does the same)
        now = trio.current_time()
        self._outbound.push(pcm16, now)
        self._send_due(now)

    def _send_due(self, now: float) -> None:
        """Packets of the negotiated ptime whose time has come (see the repacketizer)."""
        for packet_pcm16 in self._outbound.due(now):
            self._send_packets(self.session.send_audio(packet_pcm16, self._ms(now)))

    async def clear(self) -> None:
        """Barge-in: drop the part packet not sent yet; the peer plays what already left."""
        self._outbound.clear()

    async def send_mark(self, name: str) -> None:
        """RTP cannot report playout; the call reports marks to the agent itself."""

    async def send_dtmf(self, digits: str) -> None:
        """RFC 4733 events, paced on our own 20 ms grid with silence between presses."""
        if self.held:
            return  # on hold nothing is sent, key presses included
        try:
            self.session.send_dtmf(digits)
        except DtmfError as exc:
            raise LegCannotDo(str(exc)) from None
        self._dtmf_active = True
        self._outbound.clear()
        silence = bytes(pcm16_bytes_per_frame(self.rate_hz, self.session.config.ptime_ms))
        try:
            tick = trio.current_time()
            while self.session.dtmf_pending and not self._closed:
                self._send_packets(self.session.send_audio(silence, self._ms(tick)))
                tick += self._ptime_s
                await trio.sleep_until(tick)
        finally:
            self._dtmf_active = False

    async def hangup(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        with trio.move_on_after(0.2), contextlib.suppress(OSError):
            await self._maybe_report(trio.current_time(), bye=reason[:64] or "bye")
        self._raw.detach()  # the Trio socket owns the descriptor and closes it
        self._sock.close()
        if self._rtcp_sock is not None:
            self._rtcp_sock.close()
