"""The repacketizer: the core's 20 ms frames in, packets of exactly the negotiated ptime out,
each due on the wire ptime after the one before, with nothing lost, added or reordered."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.audio import pcm16_bytes_per_frame
from media.rtp.repacketizer import PAUSE_S, Repacketizer

RATE_HZ = 8000
FRAME_BYTES = pcm16_bytes_per_frame(RATE_HZ)


def _frames(count: int, first: int = 0) -> list[bytes]:
    """20 ms frames whose samples count up, so that any cut, gap or repeat shows."""
    return [
        b"".join((i % 30_000).to_bytes(2, "little") for i in range(n * 160, (n + 1) * 160))
        for n in range(first, first + count)
    ]


def _run(packetizer: Repacketizer, frames: list[bytes], push_times_s: list[float],
         until_s: float) -> list[tuple[float, bytes]]:  # fmt: skip
    """Push frames at their times and take packets whenever the packetizer says one is due,
    as the leg does; returns (send time, pcm16)."""
    sent: list[tuple[float, bytes]] = []
    pushes = list(zip(push_times_s, frames, strict=True))
    now = 0.0
    while now <= until_s:
        wake = packetizer.next_due_s
        next_push = pushes[0][0] if pushes else until_s + 1
        now = min(next_push, wake if wake is not None else until_s + 1)
        if now > until_s:
            break
        if pushes and pushes[0][0] == now:
            packetizer.push(pushes.pop(0)[1], now)
        sent += [(now, p) for p in packetizer.due(now)]
    return sent


@pytest.mark.parametrize(("ptime_ms", "first_s"), [(10, 0.0), (20, 0.0), (30, 0.02),
                                                  (40, 0.02), (60, 0.04)])  # fmt: skip
def test_a_steady_stream_leaves_exactly_ptime_apart_and_in_ptime_packets(
    ptime_ms: int, first_s: float
) -> None:
    packetizer = Repacketizer(RATE_HZ, ptime_ms)
    frames = _frames(60)  # 1.2 s
    sent = _run(packetizer, frames, [n * 0.02 for n in range(60)], until_s=1.3)
    assert all(len(pcm16) == pcm16_bytes_per_frame(RATE_HZ, ptime_ms) for _, pcm16 in sent)
    assert b"".join(pcm16 for _, pcm16 in sent) == b"".join(frames)  # 1200 is a multiple
    times = [t for t, _ in sent]
    assert times[0] == pytest.approx(first_s)  # as soon as the first packet's audio is here
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([ptime_ms / 1000] * len(gaps), abs=1e-9)


def test_thirty_ms_packets_never_wait_for_audio_they_do_not_have_yet() -> None:
    """Each packet is due no earlier than the push of the frame that completes it."""
    packetizer = Repacketizer(RATE_HZ, 30)
    frames = _frames(9)
    sent = _run(packetizer, frames, [n * 0.02 for n in range(9)], until_s=0.3)
    # Packet j ends at (j + 1) * 30 ms of audio, which the frame pushed at ceil(...) brings.
    for j, (time_s, _) in enumerate(sent[:6]):
        completing_frame = -(-(j + 1) * 30 // 20) - 1
        assert time_s >= completing_frame * 0.02 - 1e-12
        assert time_s - completing_frame * 0.02 <= 0.01 + 1e-12  # and waits 10 ms at most


def test_the_tail_of_a_talkspurt_is_padded_and_sent_once_the_stream_has_paused() -> None:
    packetizer = Repacketizer(RATE_HZ, 30)
    frames = _frames(4)  # 80 ms: two packets and 20 ms over
    sent = _run(packetizer, frames, [0.0, 0.02, 0.04, 0.06], until_s=0.5)
    assert len(sent) == 3
    tail_time, tail = sent[2]
    assert tail_time == pytest.approx(0.06 + PAUSE_S)
    assert tail == frames[3] + bytes(160)  # the last 20 ms, then 10 ms of silence
    assert packetizer.next_due_s is None and packetizer.pending_ms == 0


def test_a_stalled_pacer_is_not_a_pause_its_late_frame_continues_the_packet() -> None:
    packetizer = Repacketizer(RATE_HZ, 30)
    frames = _frames(6)
    times = [0.0, 0.02, 0.04, 0.29, 0.29, 0.30]  # a 230 ms stall (the pacer restarts after 0.1)
    sent = _run(packetizer, frames, times, until_s=0.30)
    assert b"".join(pcm16 for _, pcm16 in sent) == b"".join(frames[:5])[: 3 * 480]  # no padding


def test_clear_drops_what_was_not_sent() -> None:
    packetizer = Repacketizer(RATE_HZ, 30)
    for n, frame in enumerate(_frames(3)):
        packetizer.push(frame, n * 0.02)
    assert packetizer.pending_ms == 60
    packetizer.clear()
    assert packetizer.pending_ms == 0 and packetizer.due(1.0) == []


def test_a_stalled_sender_holds_a_bounded_backlog() -> None:
    packetizer = Repacketizer(RATE_HZ, 20)
    for frame in _frames(80):
        packetizer.push(frame, 0.0)  # never asked for due packets
    assert packetizer.pending_ms == 1000
    assert packetizer.dropped_packets == 30


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([10, 20, 30, 40, 60]),
    st.lists(st.floats(0, 0.2), min_size=1, max_size=60),
    st.sampled_from([8000, 16000]),
)
def test_any_push_timing_keeps_every_sample_in_order(
    ptime_ms: int, delays_s: list[float], rate_hz: int
) -> None:
    """Bursts, stalls and pauses: what goes out is exactly what came in (plus silence to end a
    packet), in order, in ptime packets, never sent before its audio arrived."""
    packetizer = Repacketizer(rate_hz, ptime_ms)
    frame_bytes = pcm16_bytes_per_frame(rate_hz)
    frames = [bytes([n % 251, 1]) * (frame_bytes // 2) for n in range(len(delays_s))]
    times, now = [], 0.0
    for delay in delays_s:
        now += delay
        times.append(now)
    sent = _run(packetizer, frames, times, until_s=now + 1)
    packet_bytes = pcm16_bytes_per_frame(rate_hz, ptime_ms)
    assert all(len(pcm16) == packet_bytes for _, pcm16 in sent)
    out = b"".join(pcm16 for _, pcm16 in sent)
    sent_audio = b"".join(frames)
    # Whole packets of the input, with silence only where a paused stream's tail was padded.
    assert len(out) >= len(sent_audio) and len(out) % packet_bytes == 0
    assert out.replace(b"\x00\x00", b"") == sent_audio.replace(b"\x00\x00", b"")
    send_times = [t for t, _ in sent]
    assert send_times == sorted(send_times)
    assert packetizer.pending_ms == 0
