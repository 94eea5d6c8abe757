"""A minimal SIP caller for in-process tests: one UDP socket for SIP and one for RTP.

Built on ``sip.message`` and the fixtures' request builder; no logic of the UA under test.
"""

from __future__ import annotations

import functools
import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import trio

from media.rtp.pcap import UdpDatagram, read_pcap
from media.sdp import parse_sdp
from sip.message import SipRequest, SipResponse, cseq_of, parse_message
from tests.sip.messages import request

FIXTURE_PCAP = Path(__file__).resolve().parents[2] / "rtp_fixtures" / "speech_pcmu_dtmf.pcap"


@functools.cache
def _capture() -> list[UdpDatagram]:
    return read_pcap(FIXTURE_PCAP.read_bytes()).datagrams


def offer(media_port: int, direction: str = "", ptime_ms: int | None = None) -> bytes:
    lines = [
        "v=0", "o=uac 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
        f"m=audio {media_port} RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16",
    ]  # fmt: skip
    if direction:
        lines.append(f"a={direction}")
    if ptime_ms is not None:
        lines.append(f"a=ptime:{ptime_ms}")
    return ("\r\n".join(lines) + "\r\n").encode()


@dataclass
class Uac:
    sip: trio.socket.SocketType
    rtp: trio.socket.SocketType
    node: tuple[str, int]
    call_id: str = "uac-call-1"
    to_tag: str = ""
    cseq: int = 1
    remote_rtp: tuple[str, int] = ("", 0)
    rtp_payload_types: Counter[int] = field(default_factory=Counter)

    @classmethod
    async def open(cls, node_port: int, call_id: str = "uac-call-1") -> Uac:
        sip = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await sip.bind(("127.0.0.1", 0))
        await rtp.bind(("127.0.0.1", 0))
        return cls(sip, rtp, ("127.0.0.1", node_port), call_id)

    @property
    def rtp_port(self) -> int:
        return int(self.rtp.getsockname()[1])

    def _request(self, method: str, body: bytes = b"", **kw: object) -> bytes:
        port = self.sip.getsockname()[1]
        branch = f"z9hG4bK-{self.call_id}-{method}-{self.cseq}"
        data = request(method, call_id=self.call_id, cseq=self.cseq, body=body, branch=branch,
                       to_tag=self.to_tag or None, **kw)  # type: ignore[arg-type]  # fmt: skip
        # The builder names a proxy at :5070 and a Contact at :5061; we are both.
        return data.replace(b"127.0.0.1:5070", f"127.0.0.1:{port}".encode()).replace(
            b"127.0.0.1:5061", f"127.0.0.1:{port}".encode()
        )

    async def send(self, method: str, body: bytes = b"", **kw: object) -> None:
        await self.sip.sendto(self._request(method, body, **kw), self.node)

    async def receive(self) -> SipRequest | SipResponse:
        with trio.fail_after(10):
            data = await self.sip.recv(65535)
        return parse_message(data)

    async def final_response(self) -> SipResponse:
        while True:
            message = await self.receive()
            # (skipping retransmissions of an earlier answer, which have an older CSeq)
            if not isinstance(message, SipResponse):
                continue
            if message.status >= 200 and cseq_of(message)[0] == self.cseq:
                return message

    async def call(self, direction: str = "", ptime_ms: int | None = None) -> SipResponse:
        """INVITE with an offer for our RTP socket; ACK a 2xx. Returns the final response."""
        await self.send("INVITE", offer(self.rtp_port, direction, ptime_ms))
        response = await self.final_response()
        if response.status == 200:
            self.to_tag = (response.get("To") or "").rpartition("tag=")[2]
            answer = parse_sdp(response.body)
            m = answer.media[0]
            self.remote_rtp = (m.connection or answer.connection or "", m.port)
            await self.send("ACK", cseq_method="ACK")
        return response

    async def in_dialog(self, method: str, body: bytes = b"", **kw: object) -> SipResponse:
        self.cseq += 1
        await self.send(method, body, **kw)
        response = await self.final_response()
        if method == "INVITE":
            await self.send("ACK", cseq_method="ACK")
        return response

    async def play_fixture(self) -> None:
        """Send the PCMU capture (speech, then DTMF 4 2 #) with its captured timing."""
        datagrams = _capture()
        start = trio.current_time()
        for d in datagrams:
            await trio.sleep_until(start + d.time_s - datagrams[0].time_s)
            await self.rtp.sendto(d.payload, self.remote_rtp)

    async def count_rtp(self, seconds: float) -> int:
        """Read RTP for ``seconds``, counting by payload type; returns how many arrived."""
        before = sum(self.rtp_payload_types.values())
        with trio.move_on_after(seconds):
            while True:
                data = await self.rtp.recv(2048)
                if len(data) >= 12 and data[0] >> 6 == 2 and not 200 <= data[1] <= 204:
                    self.rtp_payload_types[data[1] & 0x7F] += 1
        return sum(self.rtp_payload_types.values()) - before

    def close(self) -> None:
        self.sip.close()
        self.rtp.close()
