"""A transfer that the PBX carries on (a SIP REFER, an ARI continue or redirect) tells the caller
first: the agent says its announcement and the caller hears it whole before the leg's transfer
goes out, as before ringback on a bridged transfer (test_bridge_transfer.py).

The leg here is an AudioSocket caller given a ``refer`` that records when it was asked: what
matters is the order, not which PBX takes the call. The tone agent "says" a text as 750 Hz."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import trio

from media.bridge_transfer import TransferOutcome
from media.transfer_plan import TransferOptions
from tests.media.conftest import agent_in_thread
from tests.media.test_bridge_transfer import call_in, first_heard, heard, start_node
from tests.media.tones import SAID_HZ, SAID_S, tone_agent, tone_db
from tests.sip.peers import free_udp_port

pytestmark = [pytest.mark.slow]


@dataclass
class PbxTransfer:
    """A leg's ``refer(target)``: the PBX answers at once; ``at`` is when it was sent."""

    targets: list[str] = field(default_factory=list)
    at: float = math.inf
    done: trio.Event = field(default_factory=trio.Event)
    outcome: TransferOutcome = field(default_factory=lambda: TransferOutcome("answered"))

    def __call__(self, target: str) -> PbxTransfer:
        self.targets.append(target)
        return self

    async def run(self) -> None:
        self.at = trio.current_time()
        self.done.set()


@pytest.fixture
def agent() -> Iterator[str]:
    with agent_in_thread(tone_agent) as url:
        yield url


@pytest.mark.parametrize("announcement", [None, ""])
async def test_the_caller_hears_the_announcement_before_the_pbx_transfer(
    nursery: trio.Nursery, agent: str, announcement: str | None
) -> None:
    """The default announcement is said and heard whole before the transfer goes out; an
    empty one (the agent said its own sentence) sends it without a word of the agent's."""
    node = await start_node(nursery, agent, free_udp_port())
    pbx = PbxTransfer()
    async with trio.open_nursery() as calls:
        peer, _, call = await call_in(node, calls, 1.0)
        call._leg.refer = pbx  # type: ignore[attr-defined]
        await trio.sleep(1.4)  # talked, then quiet: the agent's answer to it has played
        asked = trio.current_time()
        call.transfer("sip:sales@pbx.example", TransferOptions(announcement=announcement))
        with trio.fail_after(15):
            outcome = await call.transfer_outcome()
        await trio.sleep(1.0)  # what the caller hears after the transfer went out
        calls.cancel_scope.cancel()
    await peer.close()
    assert outcome.status == "answered" and pbx.targets == ["sip:sales@pbx.example"]
    if announcement == "":
        assert pbx.at - asked < 3.5 + 0.6 + 1.0, "the wait for a sentence of its own is bounded"
        assert tone_db(heard(peer, asked, pbx.at + 1.0), SAID_HZ) < -40, "nothing was said"
        return
    said_at = first_heard(peer, SAID_HZ, asked, pbx.at + 1.0)
    assert said_at < pbx.at, "the announcement was heard before the transfer went out"
    assert pbx.at - said_at >= SAID_S - 0.1, "... whole"
    assert tone_db(heard(peer, pbx.at, pbx.at + 1.0), SAID_HZ) < -40, "none of it left after"
