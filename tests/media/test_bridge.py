"""The bridge: ports and one tick (media/bridge_core.py, pure), and its Trio clock
(media/bridge.py) on Trio's mock clock."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from media.bridge import Bridge
from media.bridge_core import (
    FRAME_BYTES,
    TALK_START_TICKS,
    TALK_STOP_TICKS,
    BridgeCore,
    BridgeEnded,
    BridgeFull,
    BridgePort,
    KeyPressed,
    Talking,
)
from media.leg import LegDtmf
from media.mixer import ENTRY_TONE, EXIT_TONE, FRAME_SAMPLES
from media.peer import NoPeer
from tests.media.fake_leg import LEGS, RecordingLeg, leg_side, numbered_frame


class Ear:
    """A participant's side of ``deliver``: every frame it was given, with the Trio time."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []

    def __call__(self, pcm16: bytes, rate_hz: int) -> None:
        assert rate_hz == 16000 and len(pcm16) == FRAME_BYTES
        self.frames.append(np.frombuffer(pcm16, "<i2").copy())
        try:
            self.times.append(trio.current_time())
        except RuntimeError:  # not in Trio (the pure tests)
            self.times.append(0.0)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.frames) if self.frames else np.zeros(0, np.int16)


def const_frame(value: int) -> bytes:
    return np.full(FRAME_SAMPLES, value, "<i2").tobytes()


def test_port_queue_is_bounded_in_ms_and_counts_drops() -> None:
    port = BridgePort("a", Ear(), queue_ms=100)
    for i in range(8):
        port.uplink(const_frame(i))
    assert port.dropped_ms == 60
    kept = [port.take() for _ in range(6)]
    assert kept[:5] == [const_frame(i) for i in range(3, 8)]  # the oldest went, not the newest
    assert kept[5] is None and port.silent_ticks == 1


def test_port_recuts_odd_chunks_into_frames() -> None:
    port = BridgePort("a", Ear())
    data = np.arange(3 * FRAME_SAMPLES, dtype="<i2").tobytes()
    for i in range(0, len(data), 642):  # a 44.1 kHz leg's resampler gives 321-sample chunks
        port.uplink(data[i : i + 642])
    frames = [port.take() for _ in range(3)]
    assert b"".join(f for f in frames if f is not None) == data


def test_each_hears_the_others_and_a_stalled_one_is_silence() -> None:
    core = BridgeCore(tones=False)
    ears = {pid: Ear() for pid in "abc"}
    ports = {pid: core.join(pid, ears[pid]) for pid in "abc"}
    for _ in range(5):
        ports["a"].uplink(const_frame(1000))
        ports["b"].uplink(const_frame(300))
        core.tick()  # c never sends: its leg stalled
    assert all(len(e.frames) == 5 for e in ears.values())  # nobody waited for c
    assert (ears["a"].frames[-1] == 300).all()
    assert (ears["b"].frames[-1] == 1000).all()
    assert (ears["c"].frames[-1] == 1300).all()
    assert ports["c"].silent_ticks == 5 and ports["a"].silent_ticks == 0


def test_join_limits_and_the_end() -> None:
    core = BridgeCore(tones=False, max_participants=2)
    core.join("a", Ear())
    with pytest.raises(KeyError):
        core.join("a", Ear())
    core.join("b", Ear())
    with pytest.raises(BridgeFull):
        core.join("c", Ear())
    core.leave("b")
    core.join("c", Ear())
    core.ended = True
    with pytest.raises(BridgeEnded):
        core.join("d", Ear())


def test_entry_and_exit_tones_reach_the_others_only() -> None:
    core = BridgeCore(tones=True)
    a, b = Ear(), Ear()
    core.join("a", a)
    core.tick()
    core.join("b", b)
    for _ in range(ENTRY_TONE.size // FRAME_SAMPLES + 1):
        core.tick()
    heard = a.audio()[FRAME_SAMPLES:].astype(float)
    assert np.abs(heard[: ENTRY_TONE.size] - ENTRY_TONE).max() <= 0.5
    assert not b.audio().any()
    core.leave("b")
    for _ in range(EXIT_TONE.size // FRAME_SAMPLES + 1):
        core.tick()
    tail = a.audio()[-(EXIT_TONE.size // FRAME_SAMPLES + 1) * FRAME_SAMPLES :].astype(float)
    assert np.abs(tail[: EXIT_TONE.size] - EXIT_TONE).max() <= 0.5


async def test_talking_and_key_press_events() -> None:
    core = BridgeCore(tones=False)
    port = core.join("a", Ear())
    core.join("b", Ear())
    events = []
    for _ in range(TALK_START_TICKS):
        port.uplink(const_frame(3000))
        events += core.tick()
    assert events == [Talking("a", True)]
    await port.leg_event(LegDtmf("5"))
    for _ in range(TALK_STOP_TICKS):
        events += core.tick()
    assert events == [Talking("a", True), KeyPressed("a", "5"), Talking("a", False)]


def test_leave_and_back_within_the_fade() -> None:
    core = BridgeCore(tones=False)
    a, b = Ear(), Ear()
    core.join("a", a)
    core.join("b", b)
    core.tick()
    core.leave("b")
    port = core.join("b", b)
    for _ in range(3):
        port.uplink(const_frame(500))
        core.tick()
    assert (a.frames[-1] == 500).all()
    assert set(core.ports) == {"a", "b"} and core.mixer.ids == ("a", "b")


async def test_the_clock_ticks_every_20_ms_and_a_stall_holds_nobody(
    autojump_clock: trio.abc.Clock,
) -> None:
    bridge = Bridge("b1", tones=False)
    ears = {pid: Ear() for pid in "abc"}
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        await trio.sleep(1.0)
        assert bridge.ticks == 0  # nobody there: the task sleeps
        ports = {pid: bridge.join(pid, ears[pid]) for pid in "abc"}

        async def talk(pid: str, value: int) -> None:
            while True:
                ports[pid].uplink(const_frame(value))
                await trio.sleep(0.02)

        nursery.start_soon(talk, "a", 1000)
        nursery.start_soon(talk, "b", 200)  # c joined and never says anything
        await trio.sleep(2.0)
        for pid in "abc":
            gaps = np.diff(ears[pid].times)
            assert len(ears[pid].times) == pytest.approx(100, abs=1)
            assert gaps.max() == pytest.approx(0.02) and gaps.min() == pytest.approx(0.02)
        assert (ears["c"].frames[-1] == 1200).all()
        bridge.leave("a")
        bridge.leave("b")
        bridge.leave("c")
        await trio.sleep(0.1)
        ticks = bridge.ticks
        await trio.sleep(1.0)
        assert bridge.ticks == ticks  # empty again: asleep
        bridge.close()
        nursery.cancel_scope.cancel()


def test_a_leg_whose_clock_runs_fast_is_trimmed_and_jitter_is_left_alone() -> None:
    fast, jittery = BridgePort("a", Ear()), BridgePort("b", Ear())
    agent = BridgePort("c", Ear(), queue_ms=5000, live=False)  # an agent's burst of speech
    for _ in range(100):
        agent.uplink(const_frame(7))
    for tick in range(500):  # ten seconds
        fast.uplink(const_frame(1))
        if tick % 50 == 0:  # 51 frames every 50 ticks: its clock runs 2 % fast
            fast.uplink(const_frame(1))
        if tick % 2 == 0:  # two frames every other tick: jitter, on time on average
            jittery.uplink(const_frame(2))
            jittery.uplink(const_frame(2))
        for port in (fast, jittery, agent):
            port.take()
    assert fast.queued_frames <= 2 and fast.drift_drops >= 8  # never a growing backlog
    assert jittery.drift_drops == 0 and jittery.dropped_ms == 0
    assert agent.drift_drops == 0 and agent.silent_ticks == 400  # all 100 frames played


def test_a_late_frame_leaves_no_lasting_backlog() -> None:
    """A frame that misses its tick is played as silence; the one behind it comes on time,
    so from then on a frame more waits at every tick: 20 ms added for good unless trimmed.
    It is gone within a fifth of a second, in one cut."""
    port = BridgePort("a", Ear())
    for _ in range(20):  # on time: each frame comes just before its tick
        port.uplink(const_frame(1))
        assert port.take() == const_frame(1)
    assert port.take() is None  # late: its tick found nothing
    port.uplink(const_frame(2))  # the late one
    depths = []
    for _ in range(15):  # 300 ms: the frames keep coming, one per tick
        port.uplink(const_frame(3))
        depths.append(port.queued_frames)
        port.take()
    assert depths[0] == 2  # the backlog ...
    assert depths[-5:] == [1] * 5  # ... is gone
    assert port.drift_drops == 1 and port.dropped_ms == 20


@pytest.mark.parametrize("leg_cls", LEGS, ids=["task", "tick"])
async def test_a_callers_playout_keeps_no_backlog_a_stall_left(
    autojump_clock: trio.abc.Clock, leg_cls: type[RecordingLeg]
) -> None:
    """The bridge hands a caller its mix every 20 ms. The leg's send stalls for 200 ms, beyond
    the pacer's catch-up: the mix that came meanwhile is behind, and a live stream fills the
    playout exactly as fast as it drains, so that delay would stay for the rest of the call.
    It is gone within a fifth of a second (the frames that stood queued are dropped)."""
    leg = leg_cls()

    async def stall(k: int) -> None:
        if k == 10:
            await trio.sleep(0.2)

    leg.before_send = stall
    side = leg_side(leg)
    side.attach(NoPeer(), live=True)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(side.pacer)
        for k in range(100):  # two seconds of the mix, a frame every 20 ms
            await trio.sleep_until(start + k * 0.02)
            side.play(numbered_frame(k))
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    sent = [int(np.frombuffer(f, "<i2")[0]) for f in leg.frames]
    delays = [t - start - k * 0.02 for k, t in zip(sent, leg.sent_at, strict=True)]
    assert sent == sorted(sent)  # dropped, never reordered
    assert max(delays[-40:]) < 0.02 + 1e-9  # the last 0.8 s: a frame's slot at most
