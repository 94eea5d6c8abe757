"""Many AudioSocket callers talking at once, as a PBX's calls do: every caller's frame of a
20 ms slot written together, with no checkpoint in between (so the media core finds them all
ready in one wake-up)."""

from __future__ import annotations

import os

import trio

from media.audiosocket import encode_frame
from tests.media.asterisk_peer import FRAME_S, AsteriskPeer

FRAME_BYTES = 320  # 20 ms at 8 kHz


async def talk_together(peers: list[AsteriskPeer], src: list[bytes], frames: int) -> None:
    """Frame ``k`` of every ``src`` to its peer at slot ``k`` (8 kHz PCM16)."""
    start = trio.current_time()
    for k in range(frames):
        await trio.sleep_until(start + k * FRAME_S)
        for peer, pcm16 in zip(peers, src, strict=True):  # no checkpoint in between
            frame = pcm16[k * FRAME_BYTES : (k + 1) * FRAME_BYTES]
            os.write(peer.stream.socket.fileno(), encode_frame(0x10, frame))


async def wait_heard(peers: list[AsteriskPeer], src: list[bytes], share: float = 1.0) -> None:
    """Until every peer heard ``share`` of its audio back (the echo's tail), 10 s at most."""
    with trio.fail_after(10):
        while any(len(p.audio()) < len(s) * share for p, s in zip(peers, src, strict=True)):
            await trio.sleep(0.05)
