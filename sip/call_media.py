"""The media side of a SIP call: SDP offer in, a bound RTP leg and our SDP answer out; or, for
a call we place, our offer out (:func:`open_offer`) and the peer's answer in
(:func:`media_from_answer`).

SDP errors map to SIP statuses here (RFC 3261 21.4): a malformed offer is 400, an offer with
nothing we can use is 488. A re-INVITE may put the call on hold (we answer ``recvonly`` or
``inactive`` and stop sending), resume it, or move the peer's address; a change of codec in a
re-INVITE is refused with 488 rather than half-done.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, replace

import trio

from media.leg import LegError
from media.rtp.session import RtpSession, RtpSessionConfig
from media.rtp_leg import RtpLeg, bind_udp_pair
from media.sdp import SdpError, SdpNegotiationError, SessionDescription, parse_sdp
from media.sdp_negotiation import (
    LocalMedia,
    NegotiatedMedia,
    apply_answer,
    create_answer,
    create_offer,
)
from sip.config import SipConfig


class OfferRefused(Exception):
    """The SDP offer cannot be answered; ``status`` is the SIP response to send."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


@dataclass(slots=True)
class CallMedia:
    leg: RtpLeg
    local: LocalMedia
    negotiated: NegotiatedMedia
    answer_sdp: bytes


def _answer(sdp: bytes, local: LocalMedia) -> tuple[bytes, NegotiatedMedia]:
    try:
        answer, negotiated = create_answer(parse_sdp(sdp), local)
    except SdpNegotiationError as exc:
        raise OfferRefused(488, str(exc)) from None
    except SdpError as exc:
        raise OfferRefused(400, str(exc)) from None
    return answer.serialize().encode(), negotiated


def check_offer(sdp: bytes, cfg: SipConfig) -> None:
    """Raise :class:`OfferRefused` unless ``sdp`` is an offer we can answer."""
    _answer(sdp, LocalMedia(cfg.public_host, 2, cfg.codecs))


async def open_call_media(sdp: bytes, cfg: SipConfig, bind_host: str, idle_timeout_s: float,
                          rng: random.Random) -> CallMedia:  # fmt: skip
    """Bind an RTP port pair, answer the offer, and build the RTP leg for what was agreed."""
    check_offer(sdp, cfg)  # refuse before binding a port
    sock, rtcp_sock, local = await _bind(cfg, bind_host, rng)
    answer_sdp, negotiated = _answer(sdp, local)
    leg = _rtp_leg(sock, rtcp_sock, negotiated, idle_timeout_s, rng)
    return CallMedia(leg, local, negotiated, answer_sdp)


async def _bind(
    cfg: SipConfig, bind_host: str, rng: random.Random
) -> tuple[trio.socket.SocketType, socket.socket | None, LocalMedia]:
    """An RTP port pair from the range (503 when none is free), and what we offer on it."""
    try:
        sock, rtcp_sock = await bind_udp_pair(
            bind_host, cfg.rtp_port_min, cfg.rtp_port_max, with_rtcp=True
        )
    except LegError as exc:
        raise OfferRefused(503, str(exc)) from None
    port = int(sock.getsockname()[1])
    local = LocalMedia(cfg.public_host, port, cfg.codecs, session_id=rng.getrandbits(31))
    return sock, rtcp_sock, local


def _rtp_leg(
    sock: trio.socket.SocketType,
    rtcp_sock: socket.socket | None,
    negotiated: NegotiatedMedia,
    idle_timeout_s: float,
    rng: random.Random,
) -> RtpLeg:
    session = RtpSession(
        RtpSessionConfig(
            local_ssrc=rng.getrandbits(32),
            payload_type=negotiated.payload_type,
            telephone_event_pt=negotiated.telephone_event_pt,
            ptime_ms=negotiated.ptime_ms,
            remote=(negotiated.remote_address, negotiated.remote_port),
            initial_seq=rng.getrandbits(16),
            initial_timestamp=rng.getrandbits(32),
        )
    )
    leg = RtpLeg(sock, session, rtcp_sock=rtcp_sock, idle_timeout_s=idle_timeout_s)
    leg.set_hold(negotiated.on_hold)
    return leg


@dataclass(slots=True)
class OfferedMedia:
    """A bound RTP port pair and the offer we sent for it, until the answer comes."""

    sock: trio.socket.SocketType
    rtcp_sock: socket.socket | None
    local: LocalMedia
    offer: SessionDescription
    sdp: bytes

    def close(self) -> None:
        self.sock.close()
        if self.rtcp_sock is not None:
            self.rtcp_sock.close()


async def open_offer(cfg: SipConfig, bind_host: str, rng: random.Random) -> OfferedMedia:
    """Bind an RTP port pair and write our offer (the codecs of ``cfg``, in its order)."""
    sock, rtcp_sock, local = await _bind(cfg, bind_host, rng)
    offer = create_offer(local)
    return OfferedMedia(sock, rtcp_sock, local, offer, offer.serialize().encode())


def media_from_answer(offered: OfferedMedia, answer_sdp: bytes, idle_timeout_s: float,
                      rng: random.Random) -> CallMedia:  # fmt: skip
    """The RTP leg for what the peer's answer chose; :class:`OfferRefused` if it is unusable
    (the caller then closes ``offered``)."""
    try:
        negotiated = apply_answer(offered.offer, parse_sdp(answer_sdp))
    except SdpNegotiationError as exc:
        raise OfferRefused(488, str(exc)) from None
    except SdpError as exc:
        raise OfferRefused(400, str(exc)) from None
    leg = _rtp_leg(offered.sock, offered.rtcp_sock, negotiated, idle_timeout_s, rng)
    return CallMedia(leg, offered.local, negotiated, offered.sdp)


def reoffer(media: CallMedia, sdp: bytes) -> bytes:
    """Apply a re-INVITE's offer (hold, resume, move) and return our new answer."""
    local = replace(media.local, session_version=media.local.session_version + 1)
    answer_sdp, negotiated = _answer(sdp, local)
    if negotiated.payload_type != media.negotiated.payload_type:
        raise OfferRefused(488, "changing the codec during a call is not supported")
    media.local, media.negotiated, media.answer_sdp = local, negotiated, answer_sdp
    media.leg.set_hold(negotiated.on_hold)
    if not negotiated.on_hold:
        media.leg.move_remote((negotiated.remote_address, negotiated.remote_port))
    return answer_sdp
