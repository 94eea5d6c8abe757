"""Per-call RTP session state, sans-I/O: datagrams in, PCM16 frames and DTMF out, and back.

The Trio adapter owns the socket and the clock; it calls :meth:`RtpSession.receive_datagram`
for every datagram (with its source address and arrival time), :meth:`RtpSession.poll` every
frame tick for the caller's audio, and :meth:`RtpSession.send_audio` per outbound frame.

Symmetric RTP (RFC 4961 style NAT traversal): the first valid packet with a negotiated payload
type *latches* the session onto its source address, and media is sent back there; afterwards a
packet from any other address is rejected and counted as spoofed (an attacker who learns the
port cannot inject or hijack audio). A re-INVITE that moves the peer calls :meth:`relatch`.
"""

from __future__ import annotations

import audioop
from collections import Counter
from dataclasses import dataclass, field

from media.audio import BYTES_PER_SAMPLE, FRAME_MS, pcm16_bytes_per_frame
from media.rtp.codec import PT_G722, PT_PCMA, PT_PCMU, RTP_CLOCK_HZ, make_codec
from media.rtp.dtmf import DtmfDecoder, DtmfEncoder, DtmfError
from media.rtp.events import (
    Address,
    DtmfReceived,
    PeerBye,
    SessionEvent,
    SourceChanged,
    SourceLatched,
)
from media.rtp.jitterbuffer import FrameStatus, JitterBuffer, Piece
from media.rtp.packet import MAX_SEQ, MAX_TIMESTAMP, RtpError, RtpPacket, is_rtcp, parse_rtp
from media.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_compound,
    parse_rtcp,
)
from media.rtp.seq import SeqVerdict, TimestampUnwrapper
from media.rtp.stats import ReceptionStats

PT_CN = 13  # RFC 3389 comfort noise: played as silence
MAX_PACKET_MS = 200  # RFC 3551 4.2: receivers SHOULD accept packets of 0-200 ms, whatever ptime
_CONCEAL_REPEATS = 2  # lost frames replaced by the last one, halved each time, then silence


@dataclass(frozen=True, slots=True)
class RtpSessionConfig:
    local_ssrc: int
    payload_type: int = PT_PCMU  # the negotiated audio codec: 0 PCMU, 8 PCMA or 9 G.722
    telephone_event_pt: int | None = 101
    ptime_ms: int = 20  # what we send; any packet duration up to MAX_PACKET_MS is received
    remote: Address | None = None  # from SDP; replaced by the latched source
    initial_seq: int = 0  # RFC 3550 5.1: should be random; the caller draws it
    initial_timestamp: int = 0
    cname: str = "callbridge"
    min_depth_ms: int = 40
    max_depth_ms: int = 300

    def __post_init__(self) -> None:
        if self.payload_type not in (PT_PCMU, PT_PCMA, PT_G722):
            raise ValueError(f"payload type {self.payload_type} is not PCMU, PCMA or G.722")
        if self.telephone_event_pt is not None and not 96 <= self.telephone_event_pt <= 127:
            raise ValueError("telephone-event needs a dynamic payload type 96..127")
        if self.ptime_ms not in (10, 20, 30, 40, 60):
            raise ValueError(f"ptime {self.ptime_ms} ms not supported")


@dataclass(frozen=True, slots=True)
class StreamQuality:
    packets_in: int
    packets_out: int
    lost: int  # RFC 3550 A.3 cumulative: expected minus received
    jitter_ms: float  # RFC 3550 A.8 interarrival jitter
    concealed_frames: int  # lost at playout plus frames held to grow the jitter buffer
    late_packets: int  # arrived after their playout slot
    target_depth_ms: int
    rejected: int  # malformed, spoofed, wrong payload type...
    remote_fraction_lost: float | None  # from the peer's last report about our stream
    remote_jitter_ms: float | None


@dataclass(slots=True)
class SessionCounters:
    packets_in: int = 0
    octets_in: int = 0
    packets_out: int = 0
    octets_out: int = 0
    ssrc_changes: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> count


class RtpSession:
    def __init__(self, config: RtpSessionConfig) -> None:
        self.config = config
        self.counters = SessionCounters()
        self.latched: Address | None = None
        self.remote_ssrc: int | None = None
        self.remote_report: ReportBlock | None = None  # the peer's view of our stream
        self._decoder = make_codec(config.payload_type)
        self._encoder = make_codec(config.payload_type)
        self.rate_hz = self._decoder.rate_hz  # of the PCM16 in and out: 8 kHz, 16 for G.722
        self._samples_per_packet = RTP_CLOCK_HZ * config.ptime_ms // 1000  # timestamp units
        self._frame_bytes = pcm16_bytes_per_frame(self.rate_hz, config.ptime_ms)  # outbound
        # Inbound: the jitter buffer hands the core 20 ms frames whatever the packets held. G.711
        # and G.722 both carry one payload byte per 8 kHz timestamp unit (RFC 3551 4.5.2).
        self._rx_frame_bytes = pcm16_bytes_per_frame(self.rate_hz, FRAME_MS)
        self._pcm16_bytes_per_unit = self.rate_hz // RTP_CLOCK_HZ * BYTES_PER_SAMPLE
        self._max_packet_units = RTP_CLOCK_HZ * MAX_PACKET_MS // 1000
        self._new_source()
        self._out_seq = config.initial_seq & MAX_SEQ
        self._out_ts = config.initial_timestamp & MAX_TIMESTAMP
        self._out_marker = True
        self._last_send_ms: float | None = None
        self._dtmf_queue: list[tuple[str, int]] = []
        self._dtmf_sending: DtmfEncoder | None = None
        self._dtmf_gap_ticks = 0
        self._last_pcm16 = bytes(self._rx_frame_bytes)
        self._concealed_run = 0

    def _new_source(self) -> None:
        self.stats = ReceptionStats(RTP_CLOCK_HZ)
        self._unwrap = TimestampUnwrapper()
        self.jitter = JitterBuffer(
            RTP_CLOCK_HZ,
            FRAME_MS,
            min_depth_ms=self.config.min_depth_ms,
            max_depth_ms=self.config.max_depth_ms,
        )
        self._dtmf_in = DtmfDecoder(RTP_CLOCK_HZ)

    @property
    def remote(self) -> Address | None:
        """Where outbound media goes: the latched source, else the SDP address."""
        return self.latched or self.config.remote

    def relatch(self) -> None:
        """The peer moved (re-INVITE): accept the next valid source as the new one."""
        self.latched = None

    # Inbound -----------------------------------------------------------------------------

    def _reject(self, reason: str) -> list[SessionEvent]:
        self.counters.rejected[reason] += 1
        return []

    def receive_datagram(
        self, data: bytes, source: Address, arrival_ms: float
    ) -> list[SessionEvent]:
        """Feed one UDP datagram (RTP, or RTCP when muxed); bad ones are counted, never raised."""
        if self.latched is not None and source != self.latched:
            return self._reject("spoofed_source")
        if is_rtcp(data):
            return self._receive_rtcp(data, arrival_ms)
        try:
            packet = parse_rtp(data)
        except RtpError as exc:
            return self._reject(f"malformed_{exc.reason}")
        pt = packet.payload_type
        if pt not in (self.config.payload_type, self.config.telephone_event_pt, PT_CN):
            return self._reject("wrong_payload_type")
        events: list[SessionEvent] = []
        if self.latched is None:
            self.latched = source
            events.append(SourceLatched(source, packet.ssrc))
        if self.remote_ssrc != packet.ssrc:
            if self.remote_ssrc is not None:
                events.extend(self._flush_dtmf())
                events.append(SourceChanged(self.remote_ssrc, packet.ssrc))
                self.counters.ssrc_changes += 1
                self._new_source()
            self.remote_ssrc = packet.ssrc
        timed = pt != self.config.telephone_event_pt
        verdict = self.stats.on_packet(packet.sequence_number, packet.timestamp, arrival_ms, timed)
        if verdict is SeqVerdict.BAD_JUMP:
            return [*events, *self._reject("sequence_jump")]
        if verdict is SeqVerdict.RESTARTED:
            self.jitter.reset()
            self._unwrap.reset()
        self.counters.packets_in += 1
        self.counters.octets_in += len(packet.payload)
        timestamp_ext = self._unwrap.unwrap(packet.timestamp)
        seq_ext = self.stats.seq.extend(packet.sequence_number)
        if pt == self.config.telephone_event_pt:
            return events + self._receive_dtmf(packet, timestamp_ext, seq_ext, arrival_ms)
        if pt == PT_CN:  # its payload is a noise level, not audio: one frame of silence
            self.jitter.put_silence(timestamp_ext, self.jitter.frame_units, arrival_ms, seq_ext)
        elif len(packet.payload) > self._max_packet_units:
            return [*events, *self._reject("packet_too_long")]
        else:
            self.jitter.put(timestamp_ext, pt, packet.payload, arrival_ms, seq_ext)
        return events

    def _receive_dtmf(
        self, packet: RtpPacket, timestamp_ext: int, seq_ext: int, arrival_ms: float
    ) -> list[SessionEvent]:
        try:
            digits = self._dtmf_in.receive(packet.timestamp, packet.payload)
            duration = int.from_bytes(packet.payload[2:4], "big")
        except DtmfError:
            return self._reject("malformed_telephone_event")
        # The event's latest frame is silence on the audio timeline, not a loss (see
        # jitterbuffer); only the latest, so that a long press's arrival times keep to its end.
        frame_units = self.jitter.frame_units
        latest_ts = timestamp_ext + max(0, duration - frame_units)
        self.jitter.put_silence(latest_ts, frame_units, arrival_ms, seq_ext)
        return [DtmfReceived(d.digit, d.duration_ms) for d in digits]

    def _flush_dtmf(self) -> list[SessionEvent]:
        return [DtmfReceived(d.digit, d.duration_ms) for d in self._dtmf_in.flush()]

    def finish(self) -> list[SessionEvent]:
        """End of the call: report a key press whose end packets never arrived."""
        return self._flush_dtmf()

    def poll(self, now_ms: float) -> bytes | None:
        """One 20 ms frame of caller audio (PCM16 at ``rate_hz``) for this tick; None while
        buffering."""
        frame = self.jitter.pop(now_ms)
        if frame is None:
            return None
        if frame.status is FrameStatus.PLAYED:
            self._concealed_run = 0
            self._last_pcm16 = self._decode(frame.pieces)
            return self._last_pcm16
        return self._conceal(frame.status)

    def _decode(self, pieces: tuple[Piece, ...]) -> bytes:
        """A frame from the parts of packets that fell into it, in stream order (G.722's
        decoder has state); a part no packet brought, or silence, stays silent."""
        pcm16 = bytearray(self._rx_frame_bytes)
        for piece in pieces:
            if piece.payload_type == self.config.payload_type and piece.payload:
                decoded = self._decoder.decode(piece.payload)
                start = piece.offset * self._pcm16_bytes_per_unit
                pcm16[start : start + len(decoded)] = decoded[: len(pcm16) - start]
        return bytes(pcm16)

    def _conceal(self, status: FrameStatus) -> bytes:
        """Repeat the last frame, fading, for a lost packet; silence once the run is long."""
        self._concealed_run += 1
        if status is FrameStatus.LOST and self._concealed_run <= _CONCEAL_REPEATS:
            self._last_pcm16 = audioop.mul(self._last_pcm16, 2, 0.5)
            return self._last_pcm16
        return bytes(self._rx_frame_bytes)

    def receive_rtcp_datagram(
        self, data: bytes, source: Address, arrival_ms: float
    ) -> list[SessionEvent]:
        """RTCP from the separate RTCP port (no rtcp-mux): accepted from the latched host only."""
        if self.latched is None:
            return self._reject("rtcp_before_rtp")  # nothing to report on or to trust yet
        if source[0] != self.latched[0]:
            return self._reject("spoofed_rtcp_source")
        return self._receive_rtcp(data, arrival_ms)

    def quality(self) -> StreamQuality:
        """Per-call figures for metrics and the call record: ours and the peer's view."""
        remote = self.remote_report
        jitter = self.jitter.stats
        return StreamQuality(
            packets_in=self.counters.packets_in,
            packets_out=self.counters.packets_out,
            lost=self.stats.cumulative_lost,
            jitter_ms=self.stats.jitter_ms,
            concealed_frames=jitter.lost + jitter.holds,
            late_packets=jitter.late,
            target_depth_ms=self.jitter.target_ms,
            rejected=sum(self.counters.rejected.values()),
            remote_fraction_lost=remote.fraction_lost / 256 if remote else None,
            remote_jitter_ms=remote.jitter * 1000 / RTP_CLOCK_HZ if remote else None,
        )

    def _receive_rtcp(self, data: bytes, arrival_ms: float) -> list[SessionEvent]:
        try:
            packets = parse_rtcp(data)
        except RtcpError as exc:
            return self._reject(f"malformed_rtcp_{exc.reason}")
        return self.receive_rtcp_packets(packets, arrival_ms)

    def receive_rtcp_packets(
        self, packets: list[RtcpPacket], arrival_ms: float
    ) -> list[SessionEvent]:
        """Take in parsed RTCP (from a muxed datagram or the separate RTCP port)."""
        events: list[SessionEvent] = []
        for packet in packets:
            if isinstance(packet, Bye) and self.remote_ssrc in packet.ssrcs:
                events.append(PeerBye(packet.reason.decode("utf-8", "replace")))
            if isinstance(packet, SenderReport):
                self.stats.on_sender_report(packet.ntp_timestamp, arrival_ms)
            if isinstance(packet, SenderReport | ReceiverReport):
                for block in packet.reports:
                    if block.ssrc == self.config.local_ssrc:
                        self.remote_report = block
        return events

    # Outbound ----------------------------------------------------------------------------

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue key presses; they replace outbound audio on the following ticks."""
        if self.config.telephone_event_pt is None:
            raise DtmfError("telephone-event was not negotiated")
        for digit in digits:
            DtmfEncoder(digit, 0, duration_ms, self.config.ptime_ms)  # validates now, not later
        self._dtmf_queue.extend((digit, duration_ms) for digit in digits)

    @property
    def dtmf_pending(self) -> bool:
        return bool(self._dtmf_queue or self._dtmf_sending or self._dtmf_gap_ticks)

    def send_audio(self, pcm16: bytes, now_ms: float | None = None) -> list[bytes]:
        """Packets for one tick of ``ptime`` PCM16 at ``rate_hz`` (short frames are padded).

        With ``now_ms``, a pause in sending (the agent was silent) advances the timestamp by the
        time that passed and marks the next packet as a talkspurt start (RFC 3551 4.1), so the
        peer's jitter buffer sees silence suppression rather than a clock jump.
        """
        if now_ms is not None:
            self._advance_for_pause(now_ms)
        if len(pcm16) < self._frame_bytes:
            pcm16 = pcm16 + bytes(self._frame_bytes - len(pcm16))
        pcm16 = pcm16[: self._frame_bytes]
        packets = self._dtmf_tick()
        if not packets:
            payload = self._encoder.encode(pcm16)
            packets = [self._packet(self.config.payload_type, payload, self._out_ts)]
        self._out_ts = (self._out_ts + self._samples_per_packet) & MAX_TIMESTAMP
        return packets

    def _advance_for_pause(self, now_ms: float) -> None:
        last, self._last_send_ms = self._last_send_ms, now_ms
        if last is None:
            return
        ticks = round((now_ms - last) / self.config.ptime_ms)
        if ticks > 1:
            skipped = (ticks - 1) * self._samples_per_packet
            self._out_ts = (self._out_ts + skipped) & MAX_TIMESTAMP
            self._out_marker = True

    def _dtmf_tick(self) -> list[bytes]:
        if self._dtmf_sending is None and self._dtmf_gap_ticks:
            self._dtmf_gap_ticks -= 1
            return []
        if self._dtmf_sending is None and self._dtmf_queue:
            digit, duration_ms = self._dtmf_queue.pop(0)
            self._dtmf_sending = DtmfEncoder(digit, self._out_ts, duration_ms, self.config.ptime_ms)
        if self._dtmf_sending is None or self.config.telephone_event_pt is None:
            return []
        pt = self.config.telephone_event_pt
        packets = [
            self._packet(pt, p.payload, p.timestamp, marker=p.marker)
            for p in self._dtmf_sending.next_packets()
        ]
        if self._dtmf_sending.done:
            self._dtmf_sending = None
            self._dtmf_gap_ticks = 50 // self.config.ptime_ms + 1  # >= 50 ms between presses
            self._out_marker = True  # audio after an event starts a new talkspurt
        return packets

    def _packet(self, pt: int, payload: bytes, timestamp: int, marker: bool = False) -> bytes:
        if pt == self.config.payload_type:
            marker, self._out_marker = self._out_marker, False
        data = RtpPacket(
            pt, self._out_seq, timestamp, self.config.local_ssrc, payload, marker=marker
        ).serialize()
        self._out_seq = (self._out_seq + 1) & MAX_SEQ
        self.counters.packets_out += 1
        self.counters.octets_out += len(payload)
        return data

    def build_report(self, now_ms: float, ntp_timestamp: int, bye: str | None = None) -> bytes:
        """A compound RTCP report (SR if we have sent media, else RR) with our CNAME, and a
        BYE when ``bye`` gives the reason we are leaving."""
        blocks: tuple[ReportBlock, ...] = ()
        if self.remote_ssrc is not None:
            blocks = (self.stats.report_block(self.remote_ssrc, now_ms),)
        ssrc = self.config.local_ssrc
        report: RtcpPacket
        if self.counters.packets_out:
            report = SenderReport(
                ssrc,
                ntp_timestamp,
                self._out_ts,
                self.counters.packets_out & MAX_TIMESTAMP,
                self.counters.octets_out & MAX_TIMESTAMP,
                blocks,
            )
        else:
            report = ReceiverReport(ssrc, blocks)
        sdes = SourceDescription((SdesChunk(ssrc, ((1, self.config.cname.encode()[:255]),)),))
        packets: list[RtcpPacket] = [report, sdes]
        if bye is not None:
            packets.append(Bye((ssrc,), bye.encode()[:255]))
        return build_compound(packets)
