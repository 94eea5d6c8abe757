"""The SIP UDP listener: a thin Trio adapter over :class:`sip.ua.UserAgent`.

One socket and one task read datagrams, feed the user agent, and run its timers; each INVITE
it accepts becomes one :class:`media.call.Call` over a :class:`sip.leg.SipLeg` in its own task.
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

from media.call import Call, CallEnv, new_call_id
from media.hooks import CallInfo
from media.leg import LegDtmf, LegHangup
from sip.call_media import CallMedia, OfferRefused, open_call_media, reoffer
from sip.config import SipConfig
from sip.events import (
    CallConfirmed,
    CallEnded,
    DtmfInfo,
    IncomingCall,
    ReferStatus,
    Rejected,
    ReOffer,
    SipEvent,
)
from sip.headers import SipHeaderError, parse_uri
from sip.leg import SipLeg
from sip.message import MAX_MESSAGE_BYTES
from sip.ua import UaConfig, UserAgent

log = logging.getLogger(__name__)

CLEANUP_TIMEOUT_S = 1.0
ACK_WAIT_S = 5.0  # a transfer waits this long for the ACK of our 200
REFER_TIMEOUT_S = 40.0  # 64*T1 for the REFER itself, then the new call's ringing, bounded


class _SipCall:
    """Signalling for one call (implements :class:`sip.leg.Signalling`)."""

    def __init__(self, server: SipServer, call_id: str) -> None:
        self.server = server
        self.call_id = call_id
        self.media: CallMedia | None = None
        self.ended: str | None = None
        self.refer_send, self.refer_recv = trio.open_memory_channel[ReferStatus](8)
        self.confirmed = trio.Event()  # our 200's ACK arrived: the dialog may carry requests

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
            )
        )
        self.calls: dict[str, _SipCall] = {}
        self._rng = random.Random()
        self.send_errors = 0

    async def run(self, nursery: trio.Nursery) -> None:
        while True:
            deadline = self.ua.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                try:
                    data, source = await self.sock.recvfrom(MAX_MESSAGE_BYTES + 1)
                except ConnectionError:
                    continue  # an ICMP error from an earlier send
                address = (str(source[0]), int(source[1]))
                self._guarded(self.ua.receive_datagram, data, address, nursery=nursery)
            if deadline is not None and trio.current_time() >= deadline:
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

    def _dispatch(self, events: list[SipEvent], nursery: trio.Nursery) -> None:
        for event in events:
            if isinstance(event, Rejected):
                self.env.metrics.sip_rejected.labels(event.reason).inc()
                continue
            if isinstance(event, IncomingCall):
                self.calls[event.call_id] = _SipCall(self, event.call_id)
                nursery.start_soon(self._run_call, event)
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
            del self.calls[event.call_id]
            self.ua.bye(event.call_id, trio.current_time())
            # Shielded and bounded: at shutdown too, the peer gets its BYE and the ports close.
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT_S):
                if call.media is not None:
                    await call.media.leg.hangup("ended")
                    self._report_rtp(event.call_id, call.media)
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
    env: CallEnv, cfg: SipConfig, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Listen on ``cfg.listen`` (UDP); reports the bound port (useful with port 0)."""
    family = socket.AF_INET6 if ":" in cfg.listen.host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    with sock:
        await sock.bind((cfg.listen.host, cfg.listen.port))
        server = SipServer(sock, env, cfg)
        log.info("sip listening", extra={"host": cfg.listen.host, "port": server.ua.config.port})
        async with trio.open_nursery() as nursery:
            task_status.started(server.ua.config.port)
            await server.run(nursery)
