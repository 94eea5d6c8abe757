"""Caller audio takes one hop through pipecat, not three: a listening call's CPU on a noisy line
was half pipecat's per-frame machinery (each hop an observer record, event handler calls and a
trace line formatted for nothing), so the link's audio goes straight into the VAD's own queue.
Counted with an observer: pushes of caller audio per frame the link delivered."""

from __future__ import annotations

import asyncio

from pipecat.frames.frames import InputAudioRawFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed

from ai_pipeline.engines.models import ModelStore
from ai_pipeline.pipeline import CallAgent
from ai_pipeline.turnbench import FRAME_BYTES, QueueLink, line_payload
from proto.messages import Audio, CallStart

FRAMES = 50  # one second of a mu-law line's floor noise


class AudioPushes(BaseObserver):
    def __init__(self) -> None:
        super().__init__()
        self.hops: list[str] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, InputAudioRawFrame):
            self.hops.append(f"{data.source.name} -> {data.destination.name}")


def test_caller_audio_is_pushed_once_per_frame_from_the_vad_to_the_stt(
    models: ModelStore,
) -> None:
    pushes = AudioPushes()

    async def main() -> None:
        link = QueueLink()
        start = CallStart("hops", agent_config={"greeting": ""})
        agent = CallAgent(start, link, models, {}, observers=[pushes])
        task = asyncio.create_task(agent.run())
        noise = line_payload("floor", FRAMES * 0.02)
        for i in range(FRAMES):
            await link.inbound.put(Audio(noise[i * FRAME_BYTES : (i + 1) * FRAME_BYTES], 16000))
        async with asyncio.timeout(20):
            while len(pushes.hops) < FRAMES:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # any later hop of the same frames would show by now
        await link.inbound.put(None)
        await asyncio.wait_for(task, 20)

    asyncio.run(main())
    assert len(pushes.hops) == FRAMES, sorted(set(pushes.hops))  # (before: 3 per frame)
    assert all(hop.startswith("PhoneVADProcessor") for hop in pushes.hops), set(pushes.hops)
