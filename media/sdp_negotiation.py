"""SDP offer/answer (RFC 3264) for one G.711 or G.722 audio stream with telephone-events.

Picks the codec (our preference when answering, the answerer's choice when reading an answer),
keeps the offerer's payload type numbers, mirrors directions (hold), and rejects every other
m-line with port 0 as 3264 section 6 requires. Session ids are passed in: no clocks here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from media.sdp import (
    DIRECTIONS,
    STATIC_PAYLOADS,
    SUPPORTED_CODECS,
    SUPPORTED_PTIMES_MS,
    MediaDescription,
    RtpMap,
    SdpError,
    SdpNegotiationError,
    SessionDescription,
)


@dataclass(frozen=True, slots=True)
class LocalMedia:
    """What we can do on one RTP endpoint; ids are passed in (no clocks or randomness here)."""

    address: str
    port: int
    codecs: tuple[str, ...] = SUPPORTED_CODECS  # in our order of preference
    telephone_event_pt: int | None = 101
    ptime_ms: int = 20
    direction: str = "sendrecv"
    session_id: int = 0
    session_version: int = 0
    rtcp_mux: bool = False

    def __post_init__(self) -> None:
        if not self.codecs or any(c not in SUPPORTED_CODECS for c in self.codecs):
            raise SdpError(f"codecs must be drawn from {SUPPORTED_CODECS}, got {self.codecs}")
        if self.direction not in DIRECTIONS or self.ptime_ms not in SUPPORTED_PTIMES_MS:
            raise SdpError(f"bad direction {self.direction!r} or ptime {self.ptime_ms}")
        ipaddress.ip_address(self.address)


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """The outcome for the RTP session: where to send, with what, and in which direction."""

    remote_address: str
    remote_port: int
    payload_type: int
    codec: str
    telephone_event_pt: int | None
    ptime_ms: int
    direction: str  # ours: "sendonly" means we send and the peer does not (we put it on hold)
    rtcp_mux: bool

    @property
    def on_hold(self) -> bool:
        return self.direction in ("recvonly", "inactive") or self.remote_address in (
            "0.0.0.0",
            "::",
        )


_REVERSED = {"sendonly": "recvonly", "recvonly": "sendonly"}


def _answer_direction(offered: str, local: str) -> str:
    """RFC 3264 6.1: the answer mirrors the offer, limited by what we want ourselves."""
    mirrored = _REVERSED.get(offered, offered)
    can_send = mirrored in ("sendrecv", "sendonly") and local in ("sendrecv", "sendonly")
    can_receive = mirrored in ("sendrecv", "recvonly") and local in ("sendrecv", "recvonly")
    return {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly"}.get(
        (can_send, can_receive), "inactive"
    )


def _origin(local: LocalMedia) -> str:
    version = ipaddress.ip_address(local.address).version
    return f"callbridge {local.session_id} {local.session_version} IN IP{version} {local.address}"


def _our_media(local: LocalMedia, codecs: list[RtpMap], event: RtpMap | None, direction: str,
               ptime_ms: int) -> MediaDescription:  # fmt: skip
    rtpmaps = tuple(codecs) + ((event,) if event else ())
    return MediaDescription(
        "audio",
        local.port,
        "RTP/AVP",
        tuple(str(r.payload_type) for r in rtpmaps),
        rtpmaps=rtpmaps,
        fmtps=((event.payload_type, "0-16"),) if event else (),
        ptime_ms=ptime_ms,
        direction=direction,
        rtcp_mux=local.rtcp_mux,
    )


def create_offer(local: LocalMedia) -> SessionDescription:
    codecs = [
        RtpMap(pt, name, 8000) for pt, name in STATIC_PAYLOADS.items() if name in local.codecs
    ]
    codecs.sort(key=lambda r: local.codecs.index(r.encoding))
    pt = local.telephone_event_pt
    event = RtpMap(pt, "telephone-event", 8000) if pt is not None else None
    media = _our_media(local, codecs, event, local.direction, local.ptime_ms)
    return SessionDescription(_origin(local), connection=local.address, media=(media,))


def _negotiate(offer: SessionDescription, m: MediaDescription, local: LocalMedia,
               ours_first: bool) -> NegotiatedMedia | None:  # fmt: skip
    """Pick a codec for one offered m-line; None if it has none of ours."""
    if m.media != "audio" or m.proto != "RTP/AVP" or m.port == 0:
        return None
    offered = [r for r in map(m.rtpmap, map(int, m.formats)) if r is not None]
    usable = [r for r in offered if r.encoding.upper() in local.codecs and r.clock_rate_hz == 8000]
    if not usable:
        return None
    if ours_first:
        usable.sort(key=lambda r: local.codecs.index(r.encoding.upper()))
    events = [r for r in offered if r.encoding.lower() == "telephone-event"]
    event_pt = next((r.payload_type for r in events if r.clock_rate_hz == 8000), None)
    ptime = m.ptime_ms if m.ptime_ms in SUPPORTED_PTIMES_MS else local.ptime_ms
    address = m.connection or offer.connection
    assert address is not None  # parse_sdp guarantees a c= for every m=
    return NegotiatedMedia(
        remote_address=address,
        remote_port=m.port,
        payload_type=usable[0].payload_type,
        codec=usable[0].encoding.upper(),
        telephone_event_pt=event_pt if local.telephone_event_pt is not None else None,
        ptime_ms=ptime,
        direction=m.direction or offer.direction or "sendrecv",
        rtcp_mux=m.rtcp_mux and local.rtcp_mux,
    )


def create_answer(
    offer: SessionDescription, local: LocalMedia
) -> tuple[SessionDescription, NegotiatedMedia]:
    """Answer the first usable audio stream; reject every other m-line with port 0."""
    chosen: NegotiatedMedia | None = None
    answered: list[MediaDescription] = []
    for m in offer.media:
        result = None if chosen else _negotiate(offer, m, local, ours_first=True)
        if result is None:
            answered.append(MediaDescription(m.media, 0, m.proto, m.formats[:1]))
            continue
        direction = _answer_direction(result.direction, local.direction)
        chosen = replace(result, direction=direction)
        codec = RtpMap(result.payload_type, result.codec, 8000)
        pt = result.telephone_event_pt
        event = RtpMap(pt, "telephone-event", 8000) if pt is not None else None
        answered.append(_our_media(local, [codec], event, direction, result.ptime_ms))
    if chosen is None:
        raise SdpNegotiationError("no audio stream offers PCMU, PCMA or G722 over RTP/AVP")
    answer = SessionDescription(_origin(local), connection=local.address, media=tuple(answered))
    return answer, chosen


def apply_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia:
    """The offerer's side: check the answer against our offer and read the outcome."""
    if len(answer.media) != len(offer.media):
        raise SdpNegotiationError("the answer must have as many m= lines as the offer")
    for ours, theirs in zip(offer.media, answer.media, strict=True):
        if theirs.port == 0 or theirs.media != ours.media:
            continue
        offered_pts = set(ours.formats)
        if not set(theirs.formats) <= offered_pts:
            raise SdpNegotiationError(
                f"answer uses payload types we did not offer: {theirs.formats}"
            )
        codecs = tuple(r.encoding for r in map(ours.rtpmap, map(int, ours.formats)) if r)
        local = LocalMedia("0.0.0.0", 1, tuple(c for c in codecs if c in SUPPORTED_CODECS))
        result = _negotiate(answer, theirs, local, ours_first=False)
        if result is not None:
            return replace(result, direction=_REVERSED.get(result.direction, result.direction))
    raise SdpNegotiationError("the answer accepted no audio stream we can use")
