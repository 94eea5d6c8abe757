"""The SIP UDP listener: a thin Trio adapter over :class:`sip.ua.UserAgent`.

One socket and one task read datagrams, feed the user agent, and run its timers; each INVITE
it accepts becomes one :class:`media.call.Call` over a :class:`sip.leg.SipLeg` in its own task,
and so does each call placed through :meth:`SipServer.originate` (over a
:class:`sip.outbound.OutboundLeg`). With ``--sip-register``, the user agent keeps a
registration alive and removes it (Expires: 0) on the way out.
Whatever a call raises stays in that call's task: one escaping exception would cancel the
listener and every other call.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import random
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from typing import Any

import trio
from prometheus_client import Counter, Gauge

from media.call import Call, CallEnv, new_call_id
from media.hooks import CallInfo
from media.leg import LegDtmf, LegHangup
from sip.call_media import (
    CallMedia,
    OfferedMedia,
    OfferRefused,
    media_from_answer,
    open_call_media,
    open_offer,
    reoffer,
)
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
from sip.outbound import OriginateRefused, OutboundLeg, PickupHooks, SipOutbound
from sip.register_client import RegisterConfig
from sip.ua import UaConfig, UserAgent

log = logging.getLogger(__name__)

CLEANUP_TIMEOUT_S = 1.0
ACK_WAIT_S = 5.0  # a transfer waits this long for the ACK of our 200
REFER_TIMEOUT_S = 40.0  # 64*T1 for the REFER itself, then the new call's ringing, bounded
UNREGISTER_WAIT_S = 2.0  # at shutdown, for the registrar's answer to Expires: 0


class _SipCall:
    """Signalling for one call (implements :class:`sip.leg.Signalling`)."""

    def __init__(self, server: SipServer, call_id: str) -> None:
        self.server = server
        self.call_id = call_id
        self.media: CallMedia | None = None
        self.ended: str | None = None
        self.refer_send, self.refer_recv = trio.open_memory_channel[ReferStatus](8)
        self.confirmed = trio.Event()  # our 200's ACK arrived: the dialog may carry requests
        # A call we place: our offer, then the answer (media) or why there is none (failure).
        self.offered: OfferedMedia | None = None
        self.failure: str | None = None
        self.outcome = trio.Event()
        self.dial_to: tuple[str, str, tuple[str, int]] = ("", "", ("", 0))

    async def dial(self) -> None:
        """Send the INVITE with our offer (a call we place)."""
        target, from_uri, hop = self.dial_to
        if self.offered is not None and self.ended is None:
            now = trio.current_time()
            self.server.ua.invite(target, from_uri, self.offered.sdp, hop, now, self.call_id)
            await self.server.flush()

    async def answer(self) -> None:
        if self.media is not None and self.ended is None:
            self.server.ua.answer(self.call_id, self.media.answer_sdp, trio.current_time())
            await self.server.flush()

    async def bye(self) -> None:
        self.server.ua.bye(self.call_id, trio.current_time())
        await self.server.flush()

    async def refer(self, target: str) -> int:
        ua = self.server.ua
        dialog = ua.dialogs.get(self.call_id)
        if dialog is None:
            return 481
        # Not before the caller's ACK: through a multi-process proxy a REFER sent right after
        # our 200 can overtake it, and the caller sees a request in a dialog it does not have.
        with trio.move_on_after(ACK_WAIT_S):
            await self.confirmed.wait()
        if not self.confirmed.is_set():
            return 408
        if ":" not in target:  # a bare number or name: at the caller's domain
            try:
                target = f"sip:{target}@{parse_uri(dialog.remote_uri).host}"
            except SipHeaderError:
                return 400
        if not ua.refer(self.call_id, target, trio.current_time()):
            return 491
        await self.server.flush()
        with trio.move_on_after(REFER_TIMEOUT_S):
            async for status in self.refer_recv:
                if status.final or (200 <= status.status < 300 and status.status != 202):
                    return status.status
        return 408


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
        self.calls: dict[str, _SipCall] = {}
        self._rng = random.Random()
        self.send_errors = 0
        self._nursery: trio.Nursery | None = None
        self._waiting: trio.CancelScope | None = None  # the listener's wait for a datagram
        registry = env.metrics.registry
        self.registered = Gauge(
            "callbridge_sip_registered", "1 while our registration is current", registry=registry
        )
        self.registrations = Counter(
            "callbridge_sip_registrations", "REGISTER outcomes", ["state"], registry=registry
        )

    async def run(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
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
                self.calls[event.call_id] = _SipCall(self, event.call_id)
                nursery.start_soon(self._run_call, event)
                continue
            if isinstance(event, RegistrationChanged):
                self._on_registration(event)
                continue
            call = self.calls.get(event.call_id)
            if call is not None:
                self._on_call_event(call, event)

    def _on_call_event(self, call: _SipCall, event: SipEvent) -> None:
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
            self._on_outcome(call, event)

    def _on_outcome(self, call: _SipCall, event: OutgoingAnswered | OutgoingFailed) -> None:
        if isinstance(event, OutgoingFailed):
            call.failure = f"sip {event.status} {event.reason}"
        elif call.offered is not None:
            try:
                idle_s = self.env.config.leg_idle_timeout_s
                call.media = media_from_answer(call.offered, event.sdp, idle_s, self._rng)
            except OfferRefused as exc:
                call.failure = f"unusable SDP answer: {exc}"
                self.ua.bye(call.call_id, trio.current_time())
        call.outcome.set()

    def _on_registration(self, event: RegistrationChanged) -> None:
        self.registrations.labels(event.state).inc()
        self.registered.set(1 if event.state == "registered" else 0)
        level = logging.WARNING if event.state == "failed" else logging.INFO
        log.log(level, "sip registration", extra=asdict(event))

    def _on_reoffer(self, call: _SipCall, sdp: bytes) -> None:
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
            await self._finish(call)

    async def _finish(self, call: _SipCall) -> None:
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

    async def originate(self, source: str, destination: str, params: Mapping[str, str]) -> str:
        """Place a call to ``destination``; returns its id once the control plane has it."""
        env, nursery = self.env, self._nursery
        route = self.cfg.outbound_route(destination)
        if route is None or nursery is None:
            detail = "no outbound SIP route: set --sip-outbound or --sip-register"
            raise OriginateRefused(422, "cannot_originate", detail)
        if len(env.registry) >= env.config.max_calls:
            raise OriginateRefused(503, "unavailable", "over capacity")
        try:
            offered = await open_offer(self.cfg, self.cfg.listen.host, self._rng)
        except OfferRefused as exc:
            raise OriginateRefused(503, "unavailable", str(exc)) from None
        target, host, hop = route
        call = _SipCall(self, f"{secrets.token_hex(12)}@{self.cfg.public_host}")
        call.offered = offered
        call.dial_to = (target, f"sip:{source}@{host}", (hop.host, hop.port))
        self.calls[call.call_id] = call
        info = CallInfo(call_id=new_call_id(), leg="sip", leg_ref=call.call_id, caller=source,
                        callee=destination, remote_addr=str(hop),
                        params={**params, "direction": "outgoing"})  # fmt: skip
        ended, picked_up = trio.Event(), trio.Event()
        hooks = PickupHooks(env.hooks, picked_up)
        nursery.start_soon(self._run_outbound, call, info, hooks, ended)
        with trio.move_on_after(env.config.agent_connect_timeout_s + 5):
            while not hooks.accepted.is_set():  # an event of its own: the call may end at once
                if ended.is_set():
                    raise OriginateRefused(422, "call_refused", "the call was refused")
                await trio.sleep(0.01)
            return info.call_id
        raise OriginateRefused(503, "unavailable", "the call did not start in time")

    async def _run_outbound(
        self, call: _SipCall, info: CallInfo, hooks: PickupHooks, ended: trio.Event
    ) -> None:
        picked_up = hooks.picked_up
        env = replace(self.env, hooks=hooks)
        try:
            async with trio.open_nursery() as watch:
                watch.start_soon(_set_when_answered, call, picked_up)
                await Call(OutboundLeg(call, self.cfg.ring_timeout_s), info, env).run()
                watch.cancel_scope.cancel()
        except Exception:
            log.exception("sip call failed", extra={"sip_call_id": call.call_id})
            self.env.metrics.leg_errors.labels("sip", "internal").inc()
        finally:
            ended.set()
            await self._finish(call)

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

    async def _answer_and_run(self, call: _SipCall, event: IncomingCall) -> None:
        env = self.env
        if len(env.registry) >= env.config.max_calls:
            self.ua.reject(call.call_id, 503, trio.current_time(), retry_after_s=5)
            env.metrics.sip_rejected.labels("over_capacity").inc()
            return
        try:
            call.media = await open_call_media(
                event.sdp, self.cfg, self.cfg.listen.host, env.config.leg_idle_timeout_s, self._rng
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


async def _set_when_answered(call: _SipCall, picked_up: trio.Event) -> None:
    await call.outcome.wait()
    if call.media is not None:
        picked_up.set()


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
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``cfg.listen`` (UDP); reports the bound port (useful with port 0).
    ``outbound``, the control plane's handle, is attached to place calls."""
    family = socket.AF_INET6 if ":" in cfg.listen.host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    with sock:
        await sock.bind((cfg.listen.host, cfg.listen.port))
        server = SipServer(sock, env, cfg)
        log.info("sip listening", extra={"host": cfg.listen.host, "port": server.ua.config.port})
        if outbound is not None:
            outbound.attach(server)
        if cfg.register:
            registration = RegisterConfig(cfg.register, cfg.register_expires_s)
            server.ua.register(registration, trio.current_time())
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(server.ua.config.port)
                await server.run(nursery)
        finally:
            await server.unregister()
