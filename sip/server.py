"""The SIP UDP listener: a thin Trio adapter over :class:`sip.ua.UserAgent`.

One socket and one task read datagrams, feed the user agent, and run its timers; each INVITE
it accepts becomes one :class:`media.call.Call` over a :class:`sip.leg.SipLeg` in its own task,
and so does each call placed through :mod:`sip.outbound_calls` (over a
:class:`sip.outbound.OutboundLeg`); each call's side of SIP is :mod:`sip.call_signalling`'s.
With ``--sip-register``, the user agent keeps a registration alive and removes it (Expires: 0)
on the way out.
Whatever a call raises stays in that call's task: one escaping exception would cancel the
listener and every other call.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import random
import socket
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import trio
from prometheus_client import Counter, Gauge

from media.call import Call, CallEnv, new_call_id
from media.hooks import CallInfo
from media.leg import LegDtmf, LegHangup
from sip.call_media import CallMedia, OfferRefused, open_call_media, reoffer
from sip.call_signalling import SipCall
from sip.config import SipConfig
from sip.events import (
    CallConfirmed,
    CallEnded,
    DtmfInfo,
    IncomingCall,
    OutgoingAnswered,
    OutgoingFailed,
    OutgoingProgress,
    ReferStatus,
    RegistrationChanged,
    Rejected,
    ReOffer,
    SipEvent,
)
from sip.headers import SipHeaderError, parse_uri
from sip.leg import SipLeg
from sip.message import MAX_MESSAGE_BYTES
from sip.outbound import SipOutbound
from sip.outbound_calls import OutboundCalls
from sip.register_client import RegisterConfig
from sip.ua import UaConfig, UserAgent

log = logging.getLogger(__name__)

CLEANUP_TIMEOUT_S = 1.0
UNREGISTER_WAIT_S = 2.0  # at shutdown, for the registrar's answer to Expires: 0


class SipServer:
    def __init__(self, sock: trio.socket.SocketType, env: CallEnv, cfg: SipConfig) -> None:
        self.sock = sock
        self.env = env
        self.cfg = cfg
        port = int(sock.getsockname()[1])
        self.ua = UserAgent(
            UaConfig(
                cfg.public_host,
                port,
                invite_rate_per_s=cfg.invite_rate_per_s,
                invite_burst=cfg.invite_burst,
                max_dialogs=env.config.max_calls,
                credentials=cfg.credentials,
            )
        )
        self.calls: dict[str, SipCall] = {}
        self.outbound = OutboundCalls(self)
        self.rng = random.Random()
        self.send_errors = 0
        self.nursery: trio.Nursery | None = None
        self._waiting: trio.CancelScope | None = None  # the listener's wait for a datagram
        registry = env.metrics.registry
        self.registered = Gauge(
            "callbridge_sip_registered", "1 while our registration is current", registry=registry
        )
        self.registrations = Counter(
            "callbridge_sip_registrations", "REGISTER outcomes", ["state"], registry=registry
        )

    async def run(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        await self.flush()  # a REGISTER queued before the loop started
        while True:
            deadline = self.ua.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline) as self._waiting:
                try:
                    data, source = await self.sock.recvfrom(MAX_MESSAGE_BYTES + 1)
                except ConnectionError:
                    continue  # an ICMP error from an earlier send
                address = (str(source[0]), int(source[1]))
                self._guarded(self.ua.receive_datagram, data, address, nursery=nursery)
            self._waiting = None
            due = self.ua.next_deadline()
            if due is not None and trio.current_time() >= due:
                self._guarded(self.ua.handle_timeout, nursery=nursery)
            await self.flush()

    def _guarded(
        self, step: Callable[..., list[SipEvent]], *args: Any, nursery: trio.Nursery
    ) -> None:
        """Feed the core; a bug triggered by one datagram must not end the listener's calls."""
        try:
            events = step(*args, trio.current_time())
        except Exception:
            log.exception("sip user agent failed on input")
            self.env.metrics.sip_rejected.labels("internal_error").inc()
            return
        self._dispatch(events, nursery)

    async def flush(self) -> None:
        for data, (host, port) in self.ua.take_outgoing():
            try:
                await self.sock.sendto(data, (await _resolve(host), port))
            except OSError:  # unresolvable, unreachable or a full buffer: counted
                self.send_errors += 1  # UDP: the transaction layer retransmits
        # A command from a call's task (INVITE, BYE, REFER) may have set an earlier timer than
        # the one the listener sleeps towards: wake it then.
        due, waiting = self.ua.next_deadline(), self._waiting
        if due is not None and waiting is not None and due < waiting.deadline:
            waiting.deadline = due

    def _dispatch(self, events: list[SipEvent], nursery: trio.Nursery) -> None:
        for event in events:
            if isinstance(event, Rejected):
                self.env.metrics.sip_rejected.labels(event.reason).inc()
                continue
            if isinstance(event, IncomingCall):
                self.calls[event.call_id] = SipCall(self, event.call_id)
                nursery.start_soon(self._run_call, event)
                continue
            if isinstance(event, RegistrationChanged):
                self._on_registration(event)
                continue
            call = self.calls.get(event.call_id)
            if call is not None:
                self._on_call_event(call, event)

    def _on_call_event(self, call: SipCall, event: SipEvent) -> None:
        media = call.media
        if isinstance(event, CallEnded):
            call.ended = event.reason
            if media is not None:
                media.leg.push_event(LegHangup(f"sip {event.reason}"))
        elif isinstance(event, CallConfirmed):
            call.confirmed.set()
        elif isinstance(event, ReferStatus):
            with contextlib.suppress(trio.WouldBlock):  # nobody waits for this transfer now
                call.refer_send.send_nowait(event)
        elif isinstance(event, DtmfInfo) and media is not None:
            media.leg.push_event(LegDtmf(event.digit, event.duration_ms))
        elif isinstance(event, ReOffer):
            self._on_reoffer(call, event.sdp)
        elif isinstance(event, OutgoingProgress):
            log.info("sip call progress", extra={"sip_call_id": call.call_id, **asdict(event)})
        elif isinstance(event, OutgoingAnswered | OutgoingFailed):
            self.outbound.on_outcome(call, event)

    def _on_registration(self, event: RegistrationChanged) -> None:
        self.registrations.labels(event.state).inc()
        self.registered.set(1 if event.state == "registered" else 0)
        level = logging.WARNING if event.state == "failed" else logging.INFO
        log.log(level, "sip registration", extra=asdict(event))

    def _on_reoffer(self, call: SipCall, sdp: bytes) -> None:
        now = trio.current_time()
        if call.media is None:
            self.ua.reject(call.call_id, 491, now)
            return
        if not sdp:  # no offer in the re-INVITE: ours goes in the 200, unchanged
            self.ua.answer(call.call_id, call.media.answer_sdp, now)
            return
        try:
            self.ua.answer(call.call_id, reoffer(call.media, sdp), now)
        except OfferRefused as exc:
            self.ua.reject(call.call_id, exc.status, now)

    async def _run_call(self, event: IncomingCall) -> None:
        call = self.calls[event.call_id]
        try:
            await self._answer_and_run(call, event)
        except Exception:
            log.exception("sip call failed", extra={"sip_call_id": event.call_id})
            self.env.metrics.leg_errors.labels("sip", "internal").inc()
        finally:
            await self.finish(call)

    async def finish(self, call: SipCall) -> None:
        del self.calls[call.call_id]
        self.ua.bye(call.call_id, trio.current_time())
        # Shielded and bounded: at shutdown too, the peer gets its BYE and the ports close.
        with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT_S):
            if call.media is not None:
                await call.media.leg.hangup("ended")
                self._report_rtp(call.call_id, call.media)
            elif call.offered is not None:
                call.offered.close()
            await self.flush()

    async def unregister(self) -> None:
        """Remove our registration, waiting briefly for the registrar (bounded, shielded)."""
        ua = self.ua
        with trio.CancelScope(shield=True), trio.move_on_after(UNREGISTER_WAIT_S):
            if not ua.unregister(trio.current_time()):
                return
            await self.flush()
            while ua.registration is not None and ua.registration.state == "unregistering":
                deadline = ua.next_deadline()
                with trio.move_on_at(math.inf if deadline is None else deadline):
                    data, source = await self.sock.recvfrom(MAX_MESSAGE_BYTES + 1)
                    events = ua.receive_datagram(data, (str(source[0]), int(source[1])),
                                                 trio.current_time())  # fmt: skip
                    for event in events:
                        if isinstance(event, RegistrationChanged):
                            self._on_registration(event)
                ua.handle_timeout(trio.current_time())
                await self.flush()

    def _report_rtp(self, sip_call_id: str, media: CallMedia) -> None:
        session = media.leg.session
        for reason, count in session.counters.rejected.items():
            self.env.metrics.rtp_rejected.labels(reason).inc(count)
        quality = asdict(session.quality())
        log.info("sip call rtp", extra={"sip_call_id": sip_call_id, **quality})

    async def _answer_and_run(self, call: SipCall, event: IncomingCall) -> None:
        env = self.env
        if len(env.registry) >= env.config.max_calls:
            self.ua.reject(call.call_id, 503, trio.current_time(), retry_after_s=5)
            env.metrics.sip_rejected.labels("over_capacity").inc()
            return
        try:
            call.media = await open_call_media(
                event.sdp, self.cfg, self.cfg.listen.host, env.config.leg_idle_timeout_s, self.rng
            )
        except OfferRefused as exc:
            self.ua.reject(call.call_id, exc.status, trio.current_time())
            env.metrics.sip_rejected.labels(f"offer_{exc.status}").inc()
            return
        if call.ended is not None:  # CANCEL or BYE while we were binding
            return
        # The SipLeg answers (200) when the call first reads audio. No 180 before it: through a
        # multi-process proxy it can overtake the 200, and a caller that sees 180 after 200
        # (sipp does) treats it as unexpected; the 100 Trying already stopped retransmissions.
        info = CallInfo(
            call_id=new_call_id(),
            leg="sip",
            leg_ref=event.call_id,
            caller=_user(event.caller),  # the number, as other legs report it
            callee=_user(event.callee),  # the dialled number: agent routes match on it
            remote_addr="{}:{}".format(*event.source),
        )
        await Call(SipLeg(call.media.leg, call), info, env).run()


async def _resolve(host: str) -> str:
    """An IP literal as is; a name (a Contact or Route host) by the resolver, or OSError."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        infos = await trio.socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        return str(infos[0][4][0])
    return host


def _user(uri: str) -> str:
    """``sip:+15551234@host`` -> ``+15551234``; a URI without a user part stays whole."""
    try:
        return parse_uri(uri).user or uri
    except SipHeaderError:
        return uri


async def serve_sip(
    env: CallEnv,
    cfg: SipConfig,
    outbound: SipOutbound | None = None,
    *,
    sock: socket.socket | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``cfg.listen`` (UDP), or on ``sock`` where one is handed over already bound (a
    ``serve --workers`` worker's own port); reports the bound port (useful with port 0).
    ``outbound``, the control plane's handle, is attached to place calls."""
    family = socket.AF_INET6 if ":" in cfg.listen.host else socket.AF_INET
    if sock is None:
        udp = trio.socket.socket(family, socket.SOCK_DGRAM)
    else:
        udp = trio.socket.from_stdlib_socket(sock)
    with udp:
        if sock is None:
            await udp.bind((cfg.listen.host, cfg.listen.port))
        server = SipServer(udp, env, cfg)
        log.info("sip listening", extra={"host": cfg.listen.host, "port": server.ua.config.port})
        if outbound is not None:
            outbound.attach(server.outbound)
        if cfg.register:
            registration = RegisterConfig(cfg.register, cfg.register_expires_s)
            server.ua.register(registration, trio.current_time())
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(server.ua.config.port)
                await server.run(nursery)
        finally:
            await server.unregister()
