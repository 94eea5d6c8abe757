"""What a call's agent says around a transfer (:mod:`media.bridge_transfer`): the announcement
the caller hears before it moves ("please hold while I connect you"), and a warm transfer's
introduction, said into the bridge where the callee (and the caller) hear it.

The agent speaks a text sent as a ``Text`` frame (the API's ``say``): in its own voice, after
what it is saying. Its speech reaches the caller only while it is the caller's peer, so the
call waits for it to have been heard before anything moves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from media.bridge_agent import AgentInBridge
from media.bridge_core import BridgeEnded, BridgeFull
from proto import messages as m

if TYPE_CHECKING:
    from media.agent_peer import AgentPeer
    from media.bridge import Bridge
    from media.leg_side import LegSide

Waits = tuple[float, float, float]  # seconds: to start talking, of quiet after it, at most


async def agent_says(agent: AgentPeer | None, side: LegSide, text: str, waits: Waits) -> None:
    """``agent`` says ``text`` to the caller; returns once the caller has heard it (and what
    the agent was saying before). No text: the agent's own sentence, which may still be on its
    way (its LLM said it with the tool call; its TTS has not spoken yet), is waited for and
    heard. No agent: what is queued plays out."""
    start_s, quiet_s, max_s = waits
    if agent is None or agent.parked:
        await side.wait_quiet(quiet_s, max_s)
        return
    if text.strip():
        await agent.send(m.Text(text))
    await side.wait_reply(start_s, quiet_s, max_s)


async def introduce(
    agent: AgentPeer, inside: AgentInBridge | None, text: str, waits: Waits
) -> None:
    """A warm transfer's introduction: ``agent``, in the bridge, says ``text``; returns once
    the bridge has taken it all; the agent is parked again (until the call closes it)."""
    if inside is not None:
        await agent.send(m.Text(text))
        await inside.wait_heard(*waits)
    agent.parked = True


def agent_says_in_bridge(
    agent: AgentPeer, bridge: Bridge, participant_id: str, queue_ms: int, nursery: trio.Nursery
) -> AgentInBridge | None:
    """Put the (parked) agent into ``bridge`` to speak: everyone hears it, it hears nobody (it
    has one thing to say, and its words coming back from a far end that echoes must not start
    a conversation). None if there is no room."""
    bridge.core.configure(participant_id, False, True, 1.0, 1.0)  # mute_hear
    try:
        inside = AgentInBridge(bridge, participant_id, agent, queue_ms, nursery.start_soon)
    except (BridgeFull, BridgeEnded):
        return None
    agent.route_audio(inside)
    agent.parked = False
    return inside
