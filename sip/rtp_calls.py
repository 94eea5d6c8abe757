"""RTP legs attached by SDP offer/answer through the control plane, without SIP (the shape of
rtpengine's ``offer``): an operator's SBC or B2BUA sends our API the caller's SDP offer, gets our
answer and a call id back, and points the caller's RTP at us; the call then runs like any other.

The call runs in the media core's nursery, not in the HTTP request: :meth:`RtpCalls.offer`
answers once the call is registered (its agent chosen) or raises :class:`OfferRefused` with the
reason, so an API client never holds a call id for a call that was refused.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping

import trio

from media.call import Call, CallEnv, new_call_id
from media.hooks import CallInfo
from media.recording_leg import recording
from sip.call_media import CallMedia, OfferRefused, check_offer, open_call_media
from sip.config import SipConfig, rtp_default

log = logging.getLogger(__name__)

__all__ = ["OfferRefused", "RtpCalls"]


class RtpCalls:
    """Starts RTP-leg calls once :meth:`attach` has given it the media core."""

    def __init__(self) -> None:
        self._env: CallEnv | None = None
        self._nursery: trio.Nursery | None = None
        self._cfg: SipConfig | None = None
        self._rng = random.Random()

    def attach(self, env: CallEnv, nursery: trio.Nursery, cfg: SipConfig) -> None:
        self._env, self._nursery, self._cfg = env, nursery, cfg

    async def offer(self, sdp: bytes, params: Mapping[str, str]) -> tuple[str, bytes]:
        """Answer ``sdp`` with a new call's RTP leg; returns (call id, answer SDP)."""
        env, nursery, cfg = self._env, self._nursery, self._cfg
        check_offer(sdp, cfg or rtp_default())  # a bad offer is the client's fault, first
        if env is None or nursery is None or cfg is None:
            raise OfferRefused(503, "no media core in this process")
        if len(env.registry) >= env.config.max_calls:
            raise OfferRefused(503, "over capacity")
        media = await open_call_media(
            sdp, cfg, cfg.listen.host, env.config.leg_idle_timeout_s, self._rng
        )
        info = CallInfo(
            call_id=new_call_id(), leg="rtp", remote_addr=_remote(media), params=dict(params)
        )
        ended = trio.Event()
        nursery.start_soon(self._run, env, media, info, ended)
        with trio.move_on_after(env.config.agent_connect_timeout_s + 5):
            while env.registry.get(info.call_id) is None:
                if ended.is_set():
                    raise OfferRefused(403, "the call was refused (no agent for it?)")
                await trio.sleep(0.01)
            return info.call_id, media.answer_sdp
        raise OfferRefused(503, "the call did not start in time")

    async def _run(self, env: CallEnv, media: CallMedia, info: CallInfo, ended: trio.Event) -> None:
        try:
            async with recording(media.leg, info.call_id, env.config.record_dir) as leg:
                await Call(leg, info, env).run()
        except Exception:  # one call's bug must not reach the media core's nursery
            log.exception("rtp call failed", extra={"call_id": info.call_id})
            env.metrics.leg_errors.labels("rtp", "internal").inc()
        finally:
            ended.set()
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await media.leg.hangup("ended")


def _remote(media: CallMedia) -> str:
    return f"{media.negotiated.remote_address}:{media.negotiated.remote_port}"
