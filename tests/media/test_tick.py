"""The process's shared reader and pacing tick (media/tick.py) under many AudioSocket calls at
once, through the real media core and the real echo agent: every caller hears its own audio
back, and the reader and the tick each wake once for many calls' frames, not once per frame."""

from __future__ import annotations

import os

import trio

from media.tick import current_readers, current_tick
from tests.media.asterisk_peer import FRAME_S, AsteriskPeer
from tests.media.conftest import Media, best_snr_db, tone
from tests.media.many_callers import talk_together, wait_heard

CALLS = 12
FRAMES = 50


async def test_calls_are_read_and_paced_together(media_echo: Media) -> None:
    """Like a PBX with many calls, every caller's frame of a 20 ms slot arrives together."""
    peers = [await AsteriskPeer.connect(media_echo.port) for _ in range(CALLS)]
    src = [tone(300 + 100 * i, FRAMES * FRAME_S) for i in range(CALLS)]
    async with trio.open_nursery() as nursery:
        for peer in peers:
            nursery.start_soon(peer.read_until_closed)
        await talk_together(peers, src, FRAMES)
        await wait_heard(peers, src, 0.9)  # the echo's tail, through the agent and back
        readers, tick = current_readers().wakeups, current_tick().wakeups
        for peer in peers:
            await peer.close()
    for peer, pcm16 in zip(peers, src, strict=True):
        assert best_snr_db(pcm16, peer.audio(), max_delay=2000)[0] > 30
    frames_in = media_echo.counter("callbridge_leg_frames_in_total", leg="audiosocket")
    assert frames_in == CALLS * FRAMES
    # One reader wake-up for the frames of many calls (each would have been a wake-up of its
    # call's reader task); the tick wakes only for frames that came early, many at a time.
    assert 0 < readers < frames_in / 4, readers
    frames_out = media_echo.counter("callbridge_leg_frames_out_total", leg="audiosocket")
    assert tick < frames_out / 4, (tick, frames_out)


async def _start_reader() -> None:
    current_readers()
    await trio.lowlevel.checkpoint()


def test_the_reader_closes_its_epoll_when_the_trio_run_ends() -> None:
    """One reader per Trio run: a process that runs many (a test suite) must not keep an
    epoll descriptor for each."""
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        trio.run(_start_reader)
    assert len(os.listdir("/proc/self/fd")) < before + 5
