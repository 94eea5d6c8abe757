"""Outgoing in-band DTMF (a leg with no DTMF signalling, like AudioSocket) through the call's real
leg side and pacer, on Trio's mock clock: the tones are heard, and the call's audio timeline does
not move (queued behind the call's audio, each digit delayed everything after it by 160 ms for
the rest of the call)."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from tests.media.dtmf_detect import dtmf_keys
from tests.media.fake_leg import LEGS, NowaitRecordingLeg, RecordingLeg, leg_side, numbered_frame

FRAME_S = 0.020
T0 = 10.0
TONE_FRAMES = 8  # dtmf_pcm16: 100 ms of tone + 60 ms of gap per digit


def frame_value(frame: bytes) -> int:
    values = np.frombuffer(frame, "<i2")
    return int(values[0]) if (values == values[0]).all() else -1


@pytest.mark.parametrize(
    ("rate_hz", "self_paced", "new_leg"),
    [
        (8000, False, RecordingLeg),
        (16000, False, RecordingLeg),
        (16000, True, RecordingLeg),
        (8000, False, NowaitRecordingLeg),  # paced on the shared tick (media/tick.py)
        (16000, False, NowaitRecordingLeg),
    ],
)
async def test_tones_play_over_a_live_stream_without_shifting_it(
    autojump_clock: trio.abc.Clock, rate_hz: int, self_paced: bool, new_leg: type[RecordingLeg]
) -> None:
    """An echo-like stream (frame k due at k * 20 ms) with "1234" sent at frame 50: exactly as
    many frames go out as came in, each at its own slot; frames 50..81 are the tones, and every
    other frame is the stream's own frame at its own position. On a self-paced leg (Twilio,
    chan_websocket: the far end times playout) too: sent in one burst, the tones would be played
    first and the stream after them, ~0.5 s late."""
    leg = new_leg(rate_hz)
    leg.self_paced = self_paced
    side = leg_side(leg)
    n = 150
    async with trio.open_nursery() as nursery:
        nursery.start_soon(side.pacer)
        for k in range(n):
            await trio.sleep_until(T0 + k * FRAME_S)
            if k == 50:
                await side.send_dtmf("1234")
            side.play(numbered_frame(k))  # 16 kHz in; the leg side resamples to the leg's rate
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert len(leg.frames) == n
    assert np.array(leg.sent_at) - T0 == pytest.approx(np.arange(n) * FRAME_S)
    tones = range(50, 50 + 4 * TONE_FRAMES)
    assert dtmf_keys(b"".join(leg.frames[k] for k in tones), rate_hz) == "1234"
    if rate_hz == 16000:  # no resampling: each frame is recognisable by its value
        assert [frame_value(f) for k, f in enumerate(leg.frames) if k not in tones] == [
            k for k in range(n) if k not in tones
        ]


@pytest.mark.parametrize("new_leg", LEGS, ids=["task", "tick"])
async def test_tones_on_a_silent_call_go_out_at_once(
    autojump_clock: trio.abc.Clock, new_leg: type[RecordingLeg]
) -> None:
    leg = new_leg(8000)
    side = leg_side(leg)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(side.pacer)
        await trio.sleep(1.0)
        await side.send_dtmf("5#")
        await trio.sleep(1.0)
        side.play(numbered_frame(3) * 10)  # the agent talks after the tones: all of it plays
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    tones = 2 * TONE_FRAMES
    assert leg.sent_at[0] == pytest.approx(1.0)
    assert np.diff(leg.sent_at[:tones]) == pytest.approx([FRAME_S] * (tones - 1))
    assert dtmf_keys(b"".join(leg.frames[:tones]), 8000) == "5#"
    assert len(leg.frames) == tones + 10 and leg.sent_at[tones] == pytest.approx(2.0)


@pytest.mark.parametrize("new_leg", LEGS, ids=["task", "tick"])
async def test_a_barge_in_does_not_cut_the_tones(
    autojump_clock: trio.abc.Clock, new_leg: type[RecordingLeg]
) -> None:
    leg = new_leg(8000)
    side = leg_side(leg)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(side.pacer)
        side.play(numbered_frame(7) * 50)  # a second of agent speech
        await side.send_dtmf("9")
        await trio.sleep(0.05)
        await side.interrupt()  # the caller talks over the agent
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert len(leg.frames) == TONE_FRAMES  # the speech under and after the tones is gone
    assert dtmf_keys(leg.samples().tobytes(), 8000) == "9"
