"""WebSocket-leg calls: a handshake, then a :class:`~media.call.Call`, in the media core's nursery.

The control plane owns the WebSocket routes (they share its HTTP port and its authentication) but
not the calls: each socket is relayed (:func:`media.message_socket.relay`) to one end of a bounded
in-memory pair, and the call runs on the other end in the nursery ``callbridge serve`` attaches
here. A client's disconnect then reaches the call as a hangup, never as a cancelled handler, and
one call's failure stays in that call. Every refusal closes the socket with a code and a reason
and counts ``callbridge_leg_errors{leg, reason}``.

A socket on the ASGI server's own callables (:class:`media.asgi_websocket.AsgiWebsocket`, what
the control plane hands over) is split instead: the leg reads it directly and only its sends are
relayed (:func:`media.message_socket.relay_outbound`), which saves the caller's every message a
task and a channel. Should the handler be torn down (server shutdown), the call is cancelled
with it, since its reads would otherwise wait for the idle deadline.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

import trio

from media.asgi_websocket import AsgiWebsocket
from media.call import Call, CallEnv, new_call_id
from media.chan_websocket_leg import ChanWebsocketLeg
from media.hooks import CallInfo
from media.leg import Leg, LegError
from media.message_socket import (
    CLOSE_INTERNAL_ERROR,
    MemoryMessageSocket,
    MessageSocket,
    close_quietly,
    memory_socket_pair,
    relay,
    relay_outbound,
    split_socket_pair,
)
from media.recording_leg import recording
from media.twilio_leg import TwilioLeg

log = logging.getLogger(__name__)

LegKind = Literal["twilio", "chan_websocket", "browser"]


class ChannelClaims(Protocol):
    """Whoever had Asterisk open this chan_websocket connection (ARI ExternalMedia) and knows
    it by the channel id its MEDIA_START names: returns the call's info and leg as it wants
    them, or None for a call it did not place."""

    def claim_channel(
        self, channel_id: str, info: CallInfo, leg: Leg
    ) -> tuple[CallInfo, Leg] | None: ...


Authorize = Callable[[Mapping[str, Any]], Awaitable[dict[str, str] | None]]
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_UNAUTHORIZED = 4401
SECRET_PARAMS = frozenset({"access_key", "token"})
"""Handshake parameters that carry credentials: checked by ``authorize``, then dropped."""
PAIR_CAPACITY = 64
"""Messages in flight per direction between the transport and the leg: ~1.3 s of 20 ms frames,
so a client that stops reading trips the leg's send deadline instead of growing a queue."""


class BrowserLeg(ChanWebsocketLeg):
    """The page's leg: chan_websocket's protocol (text control, binary slin16) fits a browser
    well, with no base64 and no 8 kHz; only its name in the call rows differs."""

    kind = "browser"


class WebsocketCalls:
    """Runs WebSocket-leg calls once :meth:`attach` has given it the media core."""

    def __init__(self) -> None:
        self._env: CallEnv | None = None
        self._nursery: trio.Nursery | None = None
        self.claims: ChannelClaims | None = None  # serve --ari --ari-media websocket

    def attach(self, env: CallEnv, nursery: trio.Nursery) -> None:
        self._env, self._nursery = env, nursery

    def refusal(self) -> tuple[int, str] | None:
        """Why a new call cannot start now (close code, reason), or ``None``."""
        if self._env is None or self._nursery is None:
            return CLOSE_TRY_AGAIN_LATER, "media core starting"
        if len(self._env.registry) >= self._env.config.max_calls:
            return CLOSE_TRY_AGAIN_LATER, "over capacity"
        return None

    def count_refusal(self, kind: LegKind, reason: str) -> None:
        if self._env is not None:
            self._env.metrics.leg_errors.labels(kind, reason).inc()

    async def serve(
        self,
        kind: LegKind,
        socket: MessageSocket,
        authorize: Authorize,
        *,
        remote_addr: str = "",
    ) -> None:
        """Run one call over ``socket`` until either side ends it. Once the handshake is read,
        ``authorize`` gets its parameters (Twilio's customParameters, chan_websocket's channel
        variables) and grants what overrides them (the caller's ``customer_id``...) or refuses
        the call (``None``: closed with 4401)."""
        refused = self.refusal()
        if refused is not None:
            code, reason = refused
            self.count_refusal(kind, reason.replace(" ", "_"))
            await close_quietly(socket, code, reason)
            return
        assert self._nursery is not None
        if isinstance(socket, AsgiWebsocket):
            await self._serve_split(kind, socket, authorize, remote_addr)
            return
        leg_end, inner = memory_socket_pair(PAIR_CAPACITY)
        self._nursery.start_soon(self._run_call, kind, leg_end, remote_addr, authorize)
        await relay(socket, inner)

    async def _serve_split(
        self, kind: LegKind, socket: AsgiWebsocket, authorize: Authorize, remote_addr: str
    ) -> None:
        assert self._nursery is not None
        leg_end, inner = split_socket_pair(socket, PAIR_CAPACITY)
        call_scope = trio.CancelScope()
        args = (kind, leg_end, remote_addr, authorize)
        self._nursery.start_soon(self._cancellable_call, call_scope, *args)
        try:
            await relay_outbound(socket, inner)
        except BaseException:  # torn down with the handler: the call's reads would hang on
            call_scope.cancel()
            raise

    async def _cancellable_call(
        self,
        scope: trio.CancelScope,
        kind: LegKind,
        socket: MemoryMessageSocket,
        remote_addr: str,
        authorize: Authorize,
    ) -> None:
        with scope:
            await self._run_call(kind, socket, remote_addr, authorize)

    def _claim(self, kind: LegKind, info: CallInfo, leg: Leg) -> tuple[CallInfo, Leg] | None:
        if kind != "chan_websocket" or self.claims is None:
            return None
        return self.claims.claim_channel(info.leg_ref, info, leg)

    async def _run_call(
        self, kind: LegKind, socket: MemoryMessageSocket, remote_addr: str, authorize: Authorize
    ) -> None:
        assert self._env is not None
        cfg = self._env.config
        try:
            leg: TwilioLeg | ChanWebsocketLeg
            idle_s, send_s = cfg.leg_idle_timeout_s, cfg.leg_send_timeout_s
            if kind == "twilio":
                leg = await TwilioLeg.accept(socket, idle_timeout_s=idle_s, send_timeout_s=send_s)
            else:
                leg = await (BrowserLeg if kind == "browser" else ChanWebsocketLeg).accept(
                    socket, idle_timeout_s=idle_s, send_timeout_s=send_s, metrics=self._env.metrics
                )
            info = leg.call_info(new_call_id(), remote_addr)
            granted = await authorize(info.params)
            if granted is None:
                self.count_refusal(kind, "unauthorized")
                await close_quietly(socket, CLOSE_UNAUTHORIZED, "unauthorized")
                return
            params = {k: v for k, v in info.params.items() if k not in SECRET_PARAMS}
            info = dataclasses.replace(info, params={**params, **granted})
            run_leg: Leg = leg
            claimed = self._claim(kind, info, leg)
            if claimed is not None:
                info, run_leg = claimed
            async with recording(run_leg, info.call_id, cfg.record_dir) as call_leg:
                await Call(call_leg, info, self._env).run()
        except LegError as exc:  # the handshake failed; accept_within closed the socket
            self.count_refusal(kind, exc.reason)
            log.info("websocket leg refused", extra={"leg": kind, "reason": str(exc)})
        except Exception:  # a bug in one call must not reach the media core's nursery
            log.exception("websocket call failed", extra={"leg": kind})
            self.count_refusal(kind, "internal")
            await close_quietly(socket, CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            socket.close_now()
