"""Calls we place, in the Trio adapter: ``POST /v1.0/calls`` with ``leg: sip`` lands here.

:meth:`OutboundCalls.originate` binds our offer's ports and starts the call in the listener's
nursery, over a :class:`sip.outbound.OutboundLeg`, and returns once the control plane has taken
it; the INVITE goes out when the call's agent link is up. The callee's answer (or the failure)
comes back from the listener through :meth:`OutboundCalls.on_outcome`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import trio

from media.call import Call, new_call_id
from media.hooks import CallInfo
from sip.call_media import OfferRefused, media_from_answer, open_offer
from sip.call_signalling import SipCall
from sip.events import OutgoingAnswered, OutgoingFailed
from sip.headers import SipHeaderError
from sip.outbound import OriginateRefused, OutboundLeg, PickupHooks

if TYPE_CHECKING:
    from sip.server import SipServer

log = logging.getLogger(__name__)


class OutboundCalls:
    """The listener's outbound side (implements :class:`sip.outbound.Originator`)."""

    def __init__(self, server: SipServer) -> None:
        self.server = server

    async def originate(self, source: str, destination: str, params: Mapping[str, str]) -> str:
        """Place a call to ``destination``; returns its id once the control plane has it."""
        server = self.server
        env, nursery = server.env, server.nursery
        try:
            route = server.cfg.outbound_route(destination)
        except SipHeaderError as exc:
            raise OriginateRefused(400, "invalid_request", str(exc)) from None
        if route is None or nursery is None:
            detail = "no outbound SIP route: set --sip-outbound or --sip-register"
            raise OriginateRefused(422, "cannot_originate", detail)
        if len(env.registry) >= env.config.max_calls:
            raise OriginateRefused(503, "unavailable", "over capacity")
        try:
            offered = await open_offer(server.cfg, server.cfg.listen.host, server.rng)
        except OfferRefused as exc:
            raise OriginateRefused(503, "unavailable", str(exc)) from None
        target, host, hop = route
        call = SipCall(server, f"{secrets.token_hex(12)}@{server.cfg.public_host}")
        call.offered = offered
        call.dial_to = (target, f"sip:{source}@{host}", (hop.host, hop.port))
        server.calls[call.call_id] = call
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
        self, call: SipCall, info: CallInfo, hooks: PickupHooks, ended: trio.Event
    ) -> None:
        server = self.server
        picked_up = hooks.picked_up
        env = replace(server.env, hooks=hooks)
        try:
            async with trio.open_nursery() as watch:
                watch.start_soon(_set_when_answered, call, picked_up)
                await Call(OutboundLeg(call, server.cfg.ring_timeout_s), info, env).run()
                watch.cancel_scope.cancel()
        except Exception:
            log.exception("sip call failed", extra={"sip_call_id": call.call_id})
            server.env.metrics.leg_errors.labels("sip", "internal").inc()
        finally:
            ended.set()
            await server.finish(call)

    def on_outcome(self, call: SipCall, event: OutgoingAnswered | OutgoingFailed) -> None:
        server = self.server
        if isinstance(event, OutgoingFailed):
            call.failure = f"sip {event.status} {event.reason}"
        elif call.offered is not None:
            try:
                idle_s = server.env.config.leg_idle_timeout_s
                call.media = media_from_answer(call.offered, event.sdp, idle_s, server.rng)
            except OfferRefused as exc:
                call.failure = f"unusable SDP answer: {exc}"
                server.ua.bye(call.call_id, trio.current_time())
        call.outcome.set()


async def _set_when_answered(call: SipCall, picked_up: trio.Event) -> None:
    await call.outcome.wait()
    if call.media is not None:
        picked_up.set()
