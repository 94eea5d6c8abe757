"""The pacer: catch-up after a delay, restart after a gap, slew towards an early stream.

The behaviour is driven through the call's real pacer loop (``LegSide.pacer``, media/leg_side.py)
on Trio's mock clock, with a leg that records when each frame was sent: a test that re-implements
the loop would stay green whatever the loop does. Setting ``PACER_CATCHUP_S = 0.02`` (the old
re-anchoring on a late frame) fails the stall tests here.
"""

from __future__ import annotations

import argparse
import random
from itertools import groupby, pairwise

import numpy as np
import pytest
import trio

from media.config import MAX_PLAYOUT_HOLD_MS, ConfigError, MediaConfig, add_arguments, from_args
from media.pacing import PacingGrid
from tests.media.fake_leg import LEGS, RecordingLeg, leg_side, numbered_frame

FRAME = 0.020
T0 = 10.0  # the mock clock's time of frame 0's arrival (the clock starts at 0)


@pytest.fixture(params=LEGS, ids=["task", "tick"])
def new_leg(request: pytest.FixtureRequest) -> type[RecordingLeg]:
    """Each test runs on both pacers: a task per call, and the shared tick (media/tick.py)."""
    cls: type[RecordingLeg] = request.param
    return cls


async def play(arrivals: list[float], leg: RecordingLeg, hold_s: float = 0.0) -> list[float]:
    """Send times (relative to T0) of frames that reach the real pacer, frame k at
    ``T0 + arrivals[k]`` (frames arriving at the same time in one piece, as a stalled stream
    delivers them); checks that they went out whole and in order."""
    side = leg_side(leg, hold_s=hold_s)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(side.pacer)
        for arrival, ks in groupby(range(len(arrivals)), key=arrivals.__getitem__):
            await trio.sleep_until(T0 + arrival)
            side.play(b"".join(numbered_frame(k) for k in ks))
        with trio.fail_after(len(arrivals) * FRAME + 1):
            while len(leg.sent_at) < len(arrivals):
                await trio.sleep(FRAME / 4)
        nursery.cancel_scope.cancel()
    assert [int(np.frombuffer(f, "<i2")[0]) for f in leg.frames] == list(range(len(arrivals)))
    return [t - T0 for t in leg.sent_at]


async def test_queued_audio_goes_out_20ms_apart(
    autojump_clock: trio.abc.Clock, new_leg: type[RecordingLeg]
) -> None:
    sent = await play([0.0] * 10, new_leg())  # a TTS burst: everything at once
    assert np.diff(sent) == pytest.approx([FRAME] * 9)


def live(n: int) -> list[float]:
    return [k * FRAME for k in range(n)]


async def test_a_stall_upstream_catches_up_and_the_grid_keeps_its_place(
    autojump_clock: trio.abc.Clock, new_leg: type[RecordingLeg]
) -> None:
    """A 60 ms stall upstream (the caller's side, the agent): frames 5, 6 and 7 arrive together
    with frame 8. They go out at once, and frame 8 on are on their slots again, not 60 ms late
    for the rest of the call (what re-anchoring the grid on frame 5 did)."""
    arrivals = live(30)
    for k in (5, 6, 7):
        arrivals[k] = 8 * FRAME
    sent = await play(arrivals, new_leg())
    assert sent[:5] == pytest.approx(arrivals[:5])
    assert sent[5:9] == pytest.approx([8 * FRAME] * 4)  # the burst
    assert sent[9:] == pytest.approx(arrivals[9:])  # later frames are not shifted


async def test_a_stalled_send_catches_up_and_the_grid_keeps_its_place(
    autojump_clock: trio.abc.Clock, new_leg: type[RecordingLeg]
) -> None:
    """The leg's send of frame 5 takes 60 ms (this process or its socket stalled): the frames
    whose slots passed meanwhile go out at once when it returns, then the grid is where it was."""
    leg = new_leg()

    async def stall(k: int) -> None:
        if k == 5:
            await trio.sleep(0.060)

    leg.before_send = stall
    arrivals = live(30)
    sent = await play(arrivals, leg)
    assert sent[:6] == pytest.approx(arrivals[:6])
    assert sent[6:9] == pytest.approx([5 * FRAME + 0.060] * 3)  # frames 6..8 catch up at 160 ms
    assert sent[9:] == pytest.approx(arrivals[9:])


async def test_a_stream_that_stopped_restarts_the_grid(
    autojump_clock: trio.abc.Clock, new_leg: type[RecordingLeg]
) -> None:
    sent = await play([0.0, 0.02, 0.04, 1.5, 1.5, 1.5], new_leg())
    assert sent[:4] == pytest.approx([0.0, 0.02, 0.04, 1.5])
    assert sent[4:] == pytest.approx([1.52, 1.54])


async def test_a_delay_beyond_catch_up_restarts_the_grid(
    autojump_clock: trio.abc.Clock, new_leg: type[RecordingLeg]
) -> None:
    """480 ms of frames stuck upstream come out paced from where they arrive, not as a 24-frame
    burst."""
    arrivals = [0.0] + [0.5] * 5
    sent = await play(arrivals, new_leg())
    assert sent == pytest.approx([0.0, 0.5, 0.52, 0.54, 0.56, 0.58])


async def test_a_grid_anchored_on_a_late_frame_slews_towards_the_stream(
    autojump_clock: trio.abc.Clock, new_leg: type[RecordingLeg]
) -> None:
    arrivals = [0.015, *live(200)[1:]]  # the first frame was held up
    sent = await play(arrivals, new_leg())
    gaps = np.diff(sent)
    assert gaps.min() >= FRAME - 0.001 - 1e-9
    assert sent[-1] - arrivals[-1] == pytest.approx(0.0, abs=1e-9)  # the hold-up drained away


async def test_latency_of_a_jittery_live_stream_does_not_grow(
    autojump_clock: trio.abc.Clock, new_leg: type[RecordingLeg]
) -> None:
    """Stalls of up to 80 ms at random: each is caught up, so the delay from arrival to send
    stays bounded instead of adding up stall after stall (what re-anchoring the grid did)."""
    rng = random.Random(7)
    arrivals, stall_until = [], 0.0
    for k in range(1500):
        due = k * FRAME
        if rng.random() < 0.01:
            stall_until = due + rng.uniform(0.02, 0.08)
        arrivals.append(max(due, stall_until) + rng.uniform(0, 0.002))
    sent = await play(arrivals, new_leg())
    delays = [s - a for s, a in zip(sent, arrivals, strict=True)]
    assert max(delays[-500:]) < 0.025
    assert min(b - a for a, b in pairwise(sent)) >= 0  # in order, never before it arrived
    assert min(delays) >= -1e-9


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        PacingGrid(FRAME, catchup_s=0.01, slew_s=0.001)
    with pytest.raises(ValueError):
        PacingGrid(FRAME, catchup_s=0.1, slew_s=0.001, hold_s=0.1)


def jittery_live(n: int, jitter_s: float, seed: int = 7) -> list[float]:
    """A live stream (an echo under load): frame k comes up to ``jitter_s`` after k x 20 ms."""
    rng = random.Random(seed)
    return [k * FRAME + rng.uniform(0, jitter_s) for k in range(n)]


async def test_a_hold_sends_a_jittery_live_stream_evenly(
    autojump_clock: trio.abc.Clock, new_leg: type[RecordingLeg]
) -> None:
    """Frames coming up to 6 ms apart from their 20 ms places leave 20 ms apart with an 8 ms
    hold (19 ms where a new earliest frame pulls the grid in by the slew), never later than
    their slots, each at most the hold after it came once the grid has settled; without one,
    the arrival jitter goes on to the far end."""
    arrivals = jittery_live(300, 0.006)
    held = await play(arrivals, new_leg(), hold_s=0.008)
    gaps = np.diff(held)
    assert gaps.max() <= FRAME + 1e-6 and gaps.min() >= FRAME - 0.001 - 1e-6
    assert np.mean(np.abs(gaps - FRAME) < 1e-6) > 0.95
    delays = np.asarray(held) - arrivals
    assert delays.min() >= 0 and delays[50:].max() <= 0.008 + 1e-6


async def test_without_a_hold_a_live_streams_jitter_goes_on(
    autojump_clock: trio.abc.Clock, new_leg: type[RecordingLeg]
) -> None:
    """The default: no frame waits beyond its arrival once the grid is on the earliest frames,
    so the same stream's jitter reaches the far end (what the hold is for)."""
    sent = await play(jittery_live(300, 0.006), new_leg())
    assert np.ptp(np.diff(sent)) > 0.004


async def test_a_hold_delays_a_queued_burst_once(
    autojump_clock: trio.abc.Clock, new_leg: type[RecordingLeg]
) -> None:
    """A TTS burst (everything queued at once) starts ``hold_s`` late and then runs 20 ms
    apart: the hold is paid once per started stream, not per frame."""
    sent = await play([0.0] * 10, new_leg(), hold_s=0.005)
    assert sent == pytest.approx([0.005 + k * FRAME for k in range(10)], abs=1e-6)


class SelfPacedLeg(RecordingLeg):
    """A leg whose far end times playout itself (Twilio, chan_websocket): frames go out unpaced."""

    self_paced = True


async def test_a_self_paced_leg_records_no_negative_lateness(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A TTS burst to a self-paced leg leaves at once, ahead of its slots. Early is not late:
    the lateness histogram (an operator's pacing health) must not go negative (one Twilio run
    summed -2767 s)."""
    leg = SelfPacedLeg()
    side = leg_side(leg)
    lateness = side._metrics.lateness
    async with trio.open_nursery() as nursery:
        nursery.start_soon(side.pacer)
        side.play(b"".join(numbered_frame(k) for k in range(50)))
        with trio.fail_after(5):
            while len(leg.sent_at) < 50:
                await trio.sleep(FRAME / 4)
        nursery.cancel_scope.cancel()
    assert leg.sent_at[-1] - leg.sent_at[0] < FRAME  # unpaced: the burst went out at once
    samples = lateness.collect()[0].samples
    total = next(s.value for s in samples if s.name.endswith("_sum"))
    count = next(s.value for s in samples if s.name.endswith("_count"))
    assert count == 50 and total >= 0


def test_the_hold_is_an_option_of_serve_off_by_default() -> None:
    def parsed(*argv: str) -> MediaConfig:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        return from_args(parser.parse_args(list(argv)))

    assert parsed().playout_hold_ms == 0
    assert parsed("--playout-hold-ms", "8").playout_hold_ms == 8
    for bad in ("-1", str(MAX_PLAYOUT_HOLD_MS + 1)):
        with pytest.raises(ConfigError, match="playout-hold-ms"):
            parsed("--playout-hold-ms", bad)
