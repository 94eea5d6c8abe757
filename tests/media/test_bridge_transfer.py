"""Transfers to a number on a leg with no REFER (AudioSocket): the media core places an outbound
SIP call (sipp answers, and echoes the RTP it gets, or is busy) and bridges it with the caller.

The agent here plays a 600 Hz tone for every frame it hears, so what the caller hears says who it
is connected to: 600 Hz is its agent, its own 1 kHz tone is sipp's echo through the bridge and
the SIP leg, 440/480 Hz is the ringback."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from media.audiosocket_server import serve_audiosocket
from media.bridge_transfer import TransferDesk
from media.call import CallEnv
from media.config import HostPort, MediaConfig
from media.hooks import CallHandle
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from sip.config import SipConfig
from sip.outbound import SipOutbound
from sip.server import serve_sip
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import RecordingHooks, agent_in_thread, tone
from tests.media.tones import AGENT_HZ, tone_agent, tone_db
from tests.sip.peers import require_binary, sipp_uas

pytestmark = [pytest.mark.service, pytest.mark.slow]

RATE_HZ = 8000
CALLER_HZ = 1000.0


@pytest.fixture
def agent() -> Iterator[str]:
    require_binary("sipp")
    with agent_in_thread(tone_agent) as url:
        yield url


@dataclass
class Node:
    audiosocket_port: int
    env: CallEnv
    hooks: RecordingHooks


async def start_node(nursery: trio.Nursery, agent_url: str, trunk_port: int) -> Node:
    """One media core as ``serve`` builds it: AudioSocket and SIP in one env, sharing the
    transfer desk whose dialler is the SIP listener's outbound side."""
    base = random.randrange(30_000, 39_000, 2)
    sip_cfg = SipConfig(
        listen=HostPort("127.0.0.1", 0),
        rtp_port_min=base,
        rtp_port_max=base + 198,
        outbound=HostPort("127.0.0.1", trunk_port),
        ring_timeout_s=10,
    )
    outbound = SipOutbound()
    hooks = RecordingHooks()
    env = CallEnv(
        MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=agent_url),
        hooks,
        MediaMetrics(),
        CallRegistry(),
        TransferDesk(outbound),
    )
    port = await nursery.start(serve_audiosocket, env)
    await nursery.start(serve_sip, env, sip_cfg, outbound)
    return Node(port, env, hooks)


async def caller_call(node: Node, peer: AsteriskPeer) -> CallHandle:
    with trio.fail_after(10):
        while True:
            for info in node.hooks.created:
                handle = node.env.registry.get(info.call_id)
                if info.leg_ref == str(peer.call_uuid) and handle is not None:
                    return handle
            await trio.sleep(0.02)


def heard(peer: AsteriskPeer, start: float, end: float) -> bytes:
    return b"".join(r.payload for r in peer.audio_frames() if start <= r.t < end)


async def test_transfer_answered_bridges_the_caller_with_the_far_end(
    nursery: trio.Nursery, agent: str, tmp_path: Path
) -> None:
    async with sipp_uas(tmp_path, rtp_echo=True) as uas:
        node = await start_node(nursery, agent, uas.port)
        peer = await AsteriskPeer.connect(node.audiosocket_port)
        async with trio.open_nursery() as calls:
            calls.start_soon(peer.read_until_closed)
            # The caller talks, pauses (the agent falls quiet: the transfer goes ahead), talks.
            talk = tone(CALLER_HZ, 1.5) + bytes(2 * RATE_HZ) + tone(CALLER_HZ, 5.0)
            calls.start_soon(peer.play, talk)
            call = await caller_call(node, peer)
            await trio.sleep(1.4)
            before = trio.current_time()
            call.transfer("+15550002")
            with trio.fail_after(20):
                outcome = await call.transfer_outcome()
            answered = trio.current_time()
            assert (outcome.status, outcome.detail) == ("answered", "+15550002")
            assert answered - before < 1.6  # the agent fell quiet, and sipp answers at once
            await trio.sleep(3.6 - (answered - before))
            await peer.close()  # the caller hangs up: the far end gets a BYE
            with trio.fail_after(10):
                while len(node.hooks.hungup) < 2:
                    await trio.sleep(0.05)
    run = uas.result()
    assert run.returncode == 0, run.messages[-2000:] + run.errors
    assert "INVITE sip:+15550002@127.0.0.1" in run.messages and "BYE sip:" in run.messages
    with_agent = heard(peer, before - 0.8, before)
    assert tone_db(with_agent, AGENT_HZ) > -14 and tone_db(with_agent, CALLER_HZ) < -50
    far_end = heard(peer, before + 2.0, before + 3.5)  # the caller talks again from +1.6 s
    assert tone_db(far_end, CALLER_HZ) > -16, "the caller hears itself back from sipp"
    assert tone_db(far_end, AGENT_HZ) < -50, "and no longer its agent"
    callee_info = node.hooks.created[1]
    assert callee_info.leg == "sip" and callee_info.params["direction"] == "outgoing"
    assert callee_info.params["agent_id"] == "test-agent"
    causes = sorted(cause for _, cause, _ in node.hooks.hungup)
    assert causes == ["api", "caller"]  # the caller hung up; its far end was hung up for it


async def test_busy_far_end_returns_the_caller_to_its_agent(
    nursery: trio.Nursery, agent: str, tmp_path: Path
) -> None:
    async with sipp_uas(tmp_path, "uas_busy.xml") as uas:
        node = await start_node(nursery, agent, uas.port)
        peer = await AsteriskPeer.connect(node.audiosocket_port)
        async with trio.open_nursery() as calls:
            calls.start_soon(peer.read_until_closed)
            talk = tone(CALLER_HZ, 1.0) + bytes(2 * RATE_HZ) + tone(CALLER_HZ, 4.0)
            calls.start_soon(peer.play, talk)
            call = await caller_call(node, peer)
            await trio.sleep(0.9)
            call.transfer("+15550002")
            ringing = trio.current_time() + 0.6  # once the agent is quiet
            with trio.fail_after(20):
                outcome = await call.transfer_outcome()
            failed = trio.current_time()
            assert outcome.status == "failed" and "486" in outcome.detail, outcome
            assert call.bridge_id is None
            await trio.sleep(1.2)
            await peer.close()
    ringback = heard(peer, ringing + 0.1, failed - 0.1)
    assert tone_db(ringback, 440) > -30 and tone_db(ringback, 480) > -30
    back = heard(peer, failed + 0.3, failed + 1.1)
    assert tone_db(back, AGENT_HZ) > -14, "the caller is back with its agent"
    assert uas.result().returncode == 0
