"""A simulated SIP phone for the benchmarks: INVITE with an SDP offer, then PCMU over RTP.

Signalling is one UDP socket per call speaking just enough of RFC 3261 to place and end a call
(INVITE, ACK, INFO for key presses, BYE); media is a second socket, packetised and depacketised
with :mod:`media.rtp` (the same code as the server's: the load generator measures the server,
not a different RTP stack). Received audio is decoded per packet, with no jitter buffer, so that
the caller's timing loop sees each packet's real arrival time.
"""

from __future__ import annotations

import random
import socket

import trio

from bench.wires import WireClosed
from media.rtp.codec import PT_PCMU, make_codec
from media.rtp.packet import RtpError, is_rtcp, parse_rtp
from media.rtp.session import RtpSession, RtpSessionConfig
from media.sdp import SdpError, parse_sdp
from sip.message import SipParseError, SipRequest, SipResponse, parse_message

_ANSWER_TIMEOUT_S = 10.0
_MAX_DATAGRAM = 4096


class SipRtpWire:
    def __init__(self, sip: trio.socket.SocketType, rtp: trio.socket.SocketType,
                 server: tuple[str, int], call_id: str) -> None:  # fmt: skip
        self._sip = sip
        self._rtp = rtp
        self._server = server
        self._call_id = call_id
        self._cseq = 1
        self._to = f"<sip:agent@{server[0]}:{server[1]}>"
        self._from = f"<sip:bench@127.0.0.1:{sip.getsockname()[1]}>;tag={call_id[:8]}"
        self._session: RtpSession | None = None
        self._codec = make_codec(PT_PCMU)

    @classmethod
    async def open(cls, host: str, port: int, call_uuid: str) -> SipRtpWire:
        sip = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await sip.bind(("127.0.0.1", 0))
        await rtp.bind(("127.0.0.1", 0))
        wire = cls(sip, rtp, (host, port), f"bench-{call_uuid}")
        try:
            await wire._invite()
        except BaseException:
            sip.close()
            rtp.close()
            raise
        return wire

    def _request(self, method: str, body: bytes = b"", content_type: str = "") -> SipRequest:
        port = self._sip.getsockname()[1]
        headers = [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{random.getrandbits(64):x}"),
            ("Max-Forwards", "70"),
            ("From", self._from),
            ("To", self._to),
            ("Call-ID", self._call_id),
            ("CSeq", f"{self._cseq} {method}"),
            ("Contact", f"<sip:bench@127.0.0.1:{port}>"),
        ]
        if content_type:
            headers.append(("Content-Type", content_type))
        return SipRequest(headers=headers, body=body, method=method, uri=self._to[1:-1])

    async def _send(self, request: SipRequest) -> None:
        await self._sip.sendto(request.serialize(), self._server)

    async def _invite(self) -> None:
        rtp_port = self._rtp.getsockname()[1]
        sdp = (
            f"v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        ).encode()
        await self._send(self._request("INVITE", sdp, "application/sdp"))
        response = await self._final_response()
        if response.status != 200:
            raise WireClosed(f"INVITE answered {response.status}")
        self._to += f";tag={(response.get('To') or '').rpartition('tag=')[2]}"
        try:
            answer = parse_sdp(response.body)
        except SdpError as exc:
            raise WireClosed(f"bad SDP answer: {exc}") from None
        media = answer.media[0]
        remote = (media.connection or answer.connection or "", media.port)
        config = RtpSessionConfig(local_ssrc=random.getrandbits(32), remote=remote)
        self._session = RtpSession(config)
        await self._send(self._request("ACK"))

    async def _final_response(self) -> SipResponse:
        with trio.move_on_after(_ANSWER_TIMEOUT_S):
            while True:
                try:
                    message = parse_message(await self._sip.recv(_MAX_DATAGRAM))
                except (SipParseError, OSError):
                    continue
                if isinstance(message, SipResponse) and message.status >= 200:
                    return message
        raise WireClosed("no final response to INVITE")

    async def send_audio(self, pcm16: bytes) -> None:
        assert self._session is not None
        for packet in self._session.send_audio(pcm16):
            try:
                await self._rtp.sendto(packet, self._session.remote or self._server)
            except OSError as exc:
                raise WireClosed(repr(exc)) from None

    async def receive_audio(self) -> list[bytes]:
        while True:
            try:
                data = await self._rtp.recv(_MAX_DATAGRAM)
            except OSError as exc:
                raise WireClosed(repr(exc)) from None
            if is_rtcp(data):
                continue
            try:
                packet = parse_rtp(data)
            except RtpError:
                continue
            if packet.payload_type == PT_PCMU:
                return [self._codec.decode(packet.payload)]

    async def send_dtmf(self, digit: str) -> None:
        self._cseq += 1
        body = f"Signal={digit}\r\nDuration=100\r\n".encode()
        await self._send(self._request("INFO", body, "application/dtmf-relay"))

    async def hang_up(self) -> None:
        self._cseq += 1
        await self._send(self._request("BYE"))

    async def aclose(self) -> None:
        self._sip.close()
        self._rtp.close()
