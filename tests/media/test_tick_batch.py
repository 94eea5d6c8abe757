"""Resampling batched per wake-up (media/tick.py ``batching``, media/resample_batch.py) through
the real media core and the real echo agent: many calls' frames arrive together, are resampled
in shared passes, and each caller hears exactly what resampling its own stream alone gives."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import trio

from media.resample import StreamResampler
from media.resample_batch import ResampleBatch
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import start_media
from tests.media.many_callers import FRAME_BYTES, talk_together, wait_heard

CALLS = 10
FRAMES = 40


@pytest.fixture
def group_sizes(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[int, int], list[int]]:
    """Streams per shared pass, by rate pair (the batch's own grouping, recorded)."""
    sizes: dict[tuple[int, int], list[int]] = {}
    run_group = ResampleBatch._run_group

    def recording(self: ResampleBatch, key: Any, items: Any, at: Any, outs: Any) -> None:
        sizes.setdefault((key[0], key[1]), []).append(len(items))
        run_group(self, key, items, at, outs)

    monkeypatch.setattr(ResampleBatch, "_run_group", recording)
    return sizes


@pytest.mark.parametrize("agent_link", ["ws", "mux"])
async def test_each_caller_hears_its_own_stream_resampled_alone(
    nursery: trio.Nursery,
    echo_agent: str,
    agent_link: str,
    group_sizes: dict[tuple[int, int], list[int]],
) -> None:
    media = await start_media(nursery, echo_agent, agent_link=agent_link)
    rng = np.random.default_rng(15)
    src = [
        rng.normal(0, 8000, FRAMES * FRAME_BYTES // 2).clip(-32768, 32767).astype("<i2").tobytes()
        for _ in range(CALLS)
    ]
    peers = [await AsteriskPeer.connect(media.port) for _ in range(CALLS)]
    async with trio.open_nursery() as readers:
        for peer in peers:
            readers.start_soon(peer.read_until_closed)
        await talk_together(peers, src, FRAMES)
        await wait_heard(peers, src)  # the echo's tail, through the agent and back
        for peer in peers:
            await peer.close()
    for peer, pcm16 in zip(peers, src, strict=True):
        up, down = StreamResampler(8000, 16000), StreamResampler(16000, 8000)
        expected = b"".join(
            down.process(up.process(pcm16[at : at + FRAME_BYTES]))
            for at in range(0, len(pcm16), FRAME_BYTES)
        )
        assert peer.audio()[: len(expected)] == expected
    # The callers' frames, read together, were resampled together (and on the multiplexed
    # link, whose one reader hands on every call's speech, the agent's too).
    assert max(group_sizes[(8000, 16000)]) > 1, group_sizes
    if agent_link == "mux":
        assert max(group_sizes[(16000, 8000)]) > 1, group_sizes
