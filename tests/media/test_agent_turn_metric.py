"""``callbridge_agent_turn_seconds``: from the caller's final transcript to the first audio of the
agent's answer, measured by the media core on a real call (AudioSocket peer, real agent link)."""

from __future__ import annotations

import asyncio

import trio

from ai_pipeline.link import AgentLink
from media.hooks import CallHandle
from proto import messages as m
from tests.media.conftest import agent_in_thread, start_media
from tests.media.test_call import ScriptedAgent, link_audio, run_peer

THINK_S = 0.3


async def test_turn_latency_is_observed_once_per_answer(nursery: trio.Nursery) -> None:
    async def script(link: AgentLink, agent: ScriptedAgent) -> None:
        await link.send(m.Transcript("caller", "hel", final=False))  # interim: no turn yet
        await link.send(m.Transcript("caller", "hello there", final=True))
        await asyncio.sleep(THINK_S)
        for frame in link_audio(0.2):  # one answer: only its first frame ends the turn
            await link.send(frame)
        await agent.drain(link)

    agent = ScriptedAgent(script)
    with agent_in_thread(agent) as url:
        media = await start_media(nursery, url)
        handles: list[CallHandle] = []
        answered = media.hooks.call_answered

        async def keep(call: CallHandle) -> None:
            handles.append(call)
            await answered(call)

        media.hooks.call_answered = keep  # type: ignore[method-assign]
        await run_peer(media, bytes(320 * 50), linger_s=0.3)
    registry = media.env.metrics.registry
    assert registry.get_sample_value("callbridge_agent_turn_seconds_count") == 1
    took_s = registry.get_sample_value("callbridge_agent_turn_seconds_sum")
    assert took_s is not None and THINK_S * 0.9 <= took_s < THINK_S + 5.0
    # the call keeps its own figure too, for its summary (control/hooks.py reads it at the end)
    (call,) = handles
    assert call.turn_latency_ms == [round(took_s * 1000)]
