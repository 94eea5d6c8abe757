"""Reception statistics of one source for RTCP reports: RFC 3550 appendix A.3 and A.8.

Loss comes from the extended sequence numbers (expected minus received, so duplicates can make it
negative, as the RFC intends); jitter is the A.8 running estimate in timestamp units, fed with the
arrival time the caller passes in (milliseconds, converted to the payload clock here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from media.rtp.rtcp import ReportBlock, ntp_middle32
from media.rtp.seq import SequenceTracker, SeqVerdict


@dataclass(slots=True)
class ReceptionStats:
    clock_rate_hz: int
    seq: SequenceTracker = field(default_factory=SequenceTracker)
    jitter_units: float = 0.0
    _last_transit: float | None = None
    _expected_prior: int = 0
    _received_prior: int = 0
    _last_sr_ntp: int = 0
    _last_sr_arrival_ms: float | None = None

    def on_packet(
        self, seq: int, timestamp: int, arrival_ms: float, timed: bool = True
    ) -> SeqVerdict:
        """Account for one packet; returns the sequence verdict so the caller can act on it.

        ``timed`` is False for packets whose timestamp is not their sampling instant (RFC 4733
        events repeat their start timestamp for a whole key press): they would read as jitter.
        """
        verdict = self.seq.update(seq)
        if verdict in (SeqVerdict.RESTARTED,):
            self._expected_prior = self._received_prior = 0
            self._last_transit = None
        if verdict is SeqVerdict.BAD_JUMP or not timed:
            return verdict
        # A.8: transit = arrival (in timestamp units) - RTP timestamp; only differences matter.
        transit = arrival_ms * self.clock_rate_hz / 1000 - timestamp
        if self._last_transit is not None:
            d = abs(transit - self._last_transit)
            if d > (1 << 31):  # timestamp wrapped between the two packets
                d = abs(d - (1 << 32))
            self.jitter_units += (d - self.jitter_units) / 16
        self._last_transit = transit
        return verdict

    @property
    def jitter_ms(self) -> float:
        return self.jitter_units * 1000 / self.clock_rate_hz

    @property
    def cumulative_lost(self) -> int:
        return self.seq.expected - self.seq.received

    def on_sender_report(self, ntp_timestamp: int, arrival_ms: float) -> None:
        """Remember the peer's last SR so our report carries LSR/DLSR (its round-trip input)."""
        self._last_sr_ntp = ntp_timestamp
        self._last_sr_arrival_ms = arrival_ms

    @property
    def last_sr_lsr(self) -> int:
        """LSR of the peer's last sender report (0 before any), as our report blocks carry it."""
        return ntp_middle32(self._last_sr_ntp) if self._last_sr_arrival_ms is not None else 0

    def report_block(self, ssrc: int, now_ms: float) -> ReportBlock:
        """A report block for ``ssrc``; advances the 'since last report' interval (A.3)."""
        expected = self.seq.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.seq.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.seq.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        lost = max(-(1 << 23), min((1 << 23) - 1, self.cumulative_lost))
        lsr = dlsr = 0
        if self._last_sr_arrival_ms is not None:
            lsr = ntp_middle32(self._last_sr_ntp)
            dlsr = min(0xFFFFFFFF, int(max(0.0, now_ms - self._last_sr_arrival_ms) * 65.536))
        return ReportBlock(
            ssrc=ssrc,
            fraction_lost=fraction,
            cumulative_lost=lost,
            highest_seq=self.seq.highest_extended & 0xFFFFFFFF,
            jitter=min(0xFFFFFFFF, int(self.jitter_units)),
            lsr=lsr,
            dlsr=dlsr,
        )
