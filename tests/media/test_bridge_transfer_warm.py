"""A warm transfer: the agent stays in the bridge until it has introduced the caller to the
callee, then leaves, and caller and callee hear each other.

The trunk is a second callbridge node (SIP, in this test's Trio loop), so the callee is an agent
that can say what it heard: it keeps every frame and answers sound with 900 Hz. The caller's
agent answers sound with 600 Hz and says any text as 750 Hz (tests/media/tones.py): the
callee hearing 750 Hz is the introduction, the only text said while it is on the line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from ai_pipeline.link import AgentLink
from media.hooks import CallHandle
from media.transfer_plan import TransferOptions
from proto.messages import Audio, CallStart, Hangup
from tests.media.conftest import RecordingHooks, agent_in_thread
from tests.media.test_bridge_transfer import (
    CALLER_HZ,
    call_in,
    first_heard,
    heard,
    start_node,
    transfer,
)
from tests.media.tones import AGENT_HZ, SAID_HZ, tone_agent, tone_db
from tests.sip.nodes import start_node as start_sip_node

pytestmark = [pytest.mark.service, pytest.mark.slow]

CALLEE_HZ = 900.0


@dataclass
class Callee:
    """The far end's agent: what it heard, in order (16 kHz)."""

    heard: list[bytes] = field(default_factory=list)
    hangs_up_when_introduced: bool = False

    async def __call__(self, start: CallStart, link: AgentLink) -> None:
        if not self.hangs_up_when_introduced:
            await tone_agent(start, link, CALLEE_HZ, self.heard)
            return
        while not isinstance(frame := await link.recv(), Hangup):
            if isinstance(frame, Audio):
                self.heard.append(frame.pcm16)
                if tone_db(b"".join(self.heard[-5:]), SAID_HZ, 16000) > -25:
                    await link.send(Hangup("not now"))
                    return

    def first(self, freq_hz: float) -> int:
        """Index of the first 100 ms it heard with ``freq_hz`` loud in it."""
        for i in range(len(self.heard)):
            if tone_db(b"".join(self.heard[i : i + 5]), freq_hz, 16000) > -25:
                return i
        return len(self.heard)


@pytest.fixture
def callee() -> Callee:
    return Callee()


@pytest.fixture
def agents(callee: Callee) -> Iterator[tuple[str, str]]:
    with agent_in_thread(tone_agent) as caller_agent, agent_in_thread(callee) as callee_agent:
        yield caller_agent, callee_agent


@dataclass
class TimedHooks(RecordingHooks):
    """When each call was answered (the second: the transfer's far end, on the caller's node)."""

    answered_at: list[float] = field(default_factory=list)

    async def call_answered(self, call: CallHandle) -> None:
        self.answered_at.append(trio.current_time())
        await super().call_answered(call)


async def test_warm_transfer_introduces_the_caller_then_leaves(
    nursery: trio.Nursery, agents: tuple[str, str], callee: Callee, tmp_path: Path
) -> None:
    caller_agent, callee_agent = agents
    far = await start_sip_node(nursery, callee_agent)
    hooks = TimedHooks()
    node = await start_node(nursery, caller_agent, far.port, hooks)
    async with trio.open_nursery() as calls:
        peer, talker, call = await call_in(node, calls, 1.0)
        await trio.sleep(0.9)
        warm = TransferOptions(mode="warm", introduction="Meet Alice.")
        outcome, before, left = await transfer(call, warm)  # left: the agent left the bridge
        assert (outcome.status, outcome.detail) == ("answered", "+15550002")
        talked = await talker.resume()
        await peer.close()
        with trio.fail_after(10):
            while len(node.hooks.hungup) < 2:
                await trio.sleep(0.05)
    # The far end heard the introduction first, then the caller.
    introduced, met = callee.first(SAID_HZ), callee.first(CALLER_HZ)
    assert introduced < met < len(callee.heard), (introduced, met, len(callee.heard))
    assert far.hooks.created and "15550002" in far.hooks.created[0].callee
    # The caller: the announcement (before ringback), the introduction once the far end was
    # there, then only the far end: its 900 Hz answer to the caller's tone, no agent.
    announced = first_heard(peer, SAID_HZ, before, left)
    callee_answered = hooks.answered_at[1]
    assert announced < callee_answered
    intro = heard(peer, callee_answered, left)
    assert tone_db(intro, SAID_HZ) > -20, "the caller hears the introduction too"
    after = heard(peer, talked + 0.3, talked + 1.8)
    assert tone_db(after, CALLEE_HZ) > -20, "caller and callee hear each other"
    # (the agent's tones were -10 dBFS; the far end's 900 Hz, mu-law coded over two SIP hops,
    # brings a noise floor of about -50 dB per bin: gone is under -40)
    assert tone_db(after, AGENT_HZ) < -40 and tone_db(after, SAID_HZ) < -40, "the agent left"


async def test_a_far_end_hanging_up_during_the_introduction_leaves_the_caller_with_its_agent(
    nursery: trio.Nursery, agents: tuple[str, str], callee: Callee
) -> None:
    callee.hangs_up_when_introduced = True
    caller_agent, callee_agent = agents
    far = await start_sip_node(nursery, callee_agent)
    node = await start_node(nursery, caller_agent, far.port)
    async with trio.open_nursery() as calls:
        peer, talker, call = await call_in(node, calls, 1.0)
        await trio.sleep(0.9)
        outcome, _, _ = await transfer(call, TransferOptions(mode="warm"))
        assert outcome.status == "failed" and "introduction" in outcome.detail, outcome
        assert call.bridge_id is None
        talked = await talker.resume()
        await peer.close()
    again = heard(peer, talked + 0.3, talked + 1.8)
    assert tone_db(again, AGENT_HZ) > -14, "the caller is back with its agent"
    assert far.hooks.hungup and far.hooks.hungup[0][1] == "agent"  # the far end's own hangup
