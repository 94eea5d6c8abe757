"""The pacer's grid: catch-up after a delay, restart after a gap, slew towards an early stream."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from media.pacing import PacingGrid

FRAME = 0.020


def grid() -> PacingGrid:
    return PacingGrid(FRAME, catchup_s=0.1, slew_s=0.001)


def play(arrivals: list[float]) -> list[float]:
    """Send times of a live stream whose frame k arrives at ``arrivals[k]``: a small model of
    the call's pacer (it parks when the buffer is dry, sleeps until a slot ahead)."""
    g = grid()
    sent: list[float] = []
    now = 0.0
    for k, arrival in enumerate(arrivals):
        ran_dry = arrival > now  # nothing queued: the pacer waited for this frame
        now = max(now, arrival)
        due = g.slot(now, ran_dry and k > 0)
        now = max(now, due)
        sent.append(now)
        g.advance()
    return sent


def test_queued_audio_goes_out_20ms_apart() -> None:
    sent = play([0.0] * 10)  # a TTS burst: everything at once
    assert [round(b - a, 6) for a, b in pairwise(sent)] == [FRAME] * 9


def test_frames_delayed_together_catch_up_and_keep_the_grid() -> None:
    arrivals = [k * FRAME for k in range(20)]
    for k in (5, 6, 7):
        arrivals[k] = 7 * FRAME + 0.005  # a 45 ms stall upstream: three frames arrive at once
    sent = play(arrivals)
    assert sent[5:8] == [arrivals[5]] * 3  # the burst goes out at once
    assert sent[8:] == pytest.approx(arrivals[8:])  # and later frames are on time again


def test_a_stream_that_stopped_restarts_the_grid() -> None:
    sent = play([0.0, 0.02, 0.04, 1.5, 1.5, 1.5])
    assert sent[3] == 1.5
    assert sent[4:] == pytest.approx([1.52, 1.54])


def test_a_delay_beyond_catch_up_restarts_the_grid() -> None:
    g = grid()
    assert g.slot(0.0, False) == 0.0
    g.advance()
    assert g.slot(0.5, False) == 0.5  # 480 ms behind: no 24-frame burst


def test_a_grid_anchored_on_a_late_frame_slews_towards_the_stream() -> None:
    arrivals = [0.015] + [k * FRAME for k in range(1, 200)]  # the first frame was held up
    sent = play(arrivals)
    gaps = [b - a for a, b in pairwise(sent)]
    assert min(gaps) >= FRAME - 0.001 - 1e-9
    assert sent[-1] - arrivals[-1] == pytest.approx(0.0, abs=1e-9)  # the hold-up drained away


def test_latency_of_a_jittery_live_stream_does_not_grow() -> None:
    """Stalls of up to 80 ms at random: each is caught up, so the delay from arrival to send
    stays bounded instead of adding up stall after stall (what re-anchoring the grid did)."""
    rng = random.Random(7)
    arrivals, t_stall_until = [], 0.0
    for k in range(3000):
        due = k * FRAME
        if rng.random() < 0.01:
            t_stall_until = due + rng.uniform(0.02, 0.08)
        arrivals.append(max(due, t_stall_until) + rng.uniform(0, 0.002))
    sent = play(arrivals)
    delays = [s - a for s, a in zip(sent, arrivals, strict=True)]
    assert max(delays[-500:]) < 0.025


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        PacingGrid(FRAME, catchup_s=0.01, slew_s=0.001)
