"""Transfers to a number on a leg with no REFER (AudioSocket): the media core places an outbound
SIP call (sipp answers, and echoes the RTP it gets, or is busy) and bridges it with the caller.

The agent here plays a 600 Hz tone for every frame it hears, and "says" a text as 750 Hz, so what
the caller hears says who it is connected to: 600 Hz is its agent, 750 Hz its announcement
("please hold while I connect you"), its own 1 kHz tone is sipp's echo through the bridge and
the SIP leg, 440/480 Hz is the ringback."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from ai_pipeline.link import AgentLink
from media.audiosocket import encode_frame
from media.audiosocket_server import serve_audiosocket
from media.bridge_transfer import TransferDesk, TransferOutcome
from media.call import CallEnv
from media.config import HostPort, MediaConfig
from media.hooks import CallHandle
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from media.transfer_plan import NO_OPTIONS, TransferOptions
from proto.messages import CallStart
from sip.config import SipConfig
from sip.outbound import SipOutbound
from sip.server import serve_sip
from tests.media.asterisk_peer import FRAME_S, AsteriskPeer
from tests.media.conftest import RecordingHooks, agent_in_thread, tone
from tests.media.tones import AGENT_HZ, SAID_HZ, tone_agent, tone_db
from tests.sip.peers import require_binary, sipp_uas

pytestmark = [pytest.mark.service, pytest.mark.slow]

RATE_HZ = 8000
CALLER_HZ = 1000.0


@pytest.fixture
def agent() -> Iterator[str]:
    require_binary("sipp")
    with agent_in_thread(tone_agent) as url:
        yield url


@pytest.fixture
def slow_agent() -> Iterator[str]:
    """The tone agent with a TTS that takes 1 s to start speaking a text."""
    require_binary("sipp")

    async def slow(start: CallStart, link: AgentLink) -> None:
        await tone_agent(start, link, says_after_s=1.0)

    with agent_in_thread(slow) as url:
        yield url


@dataclass
class Node:
    audiosocket_port: int
    env: CallEnv
    hooks: RecordingHooks
    sip_port: int


async def start_node(
    nursery: trio.Nursery, agent_url: str, trunk_port: int, hooks: RecordingHooks | None = None
) -> Node:
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
    hooks = hooks or RecordingHooks()
    env = CallEnv(
        MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=agent_url),
        hooks,
        MediaMetrics(),
        CallRegistry(),
        TransferDesk(outbound),
    )
    port = await nursery.start(serve_audiosocket, env)
    sip_port = await nursery.start(serve_sip, env, sip_cfg, outbound)
    return Node(port, env, hooks, sip_port)


async def caller_call(node: Node, peer: AsteriskPeer) -> CallHandle:
    with trio.fail_after(10):
        while True:
            for info in node.hooks.created:
                handle = node.env.registry.get(info.call_id)
                if info.leg_ref == str(peer.call_uuid) and handle is not None:
                    return handle
            await trio.sleep(0.02)


async def transfer(
    call: CallHandle, options: TransferOptions = NO_OPTIONS
) -> tuple[TransferOutcome, float, float]:
    """Transfer ``call`` to +15550002: how it went, when it was asked and when that was known."""
    asked = trio.current_time()
    call.transfer("+15550002", options)
    with trio.fail_after(30):
        outcome = await call.transfer_outcome()
    return outcome, asked, trio.current_time()


def heard(peer: AsteriskPeer, start: float, end: float) -> bytes:
    return b"".join(r.payload for r in peer.audio_frames() if start <= r.t < end)


@dataclass
class Talker:
    """The caller says ``first``, keeps silent (as a phone does, 20 ms frames of silence) until
    :meth:`resume`, then says ``then``."""

    peer: AsteriskPeer
    first: bytes
    then: bytes
    _go_on: trio.Event = field(default_factory=trio.Event)
    _done: trio.Event = field(default_factory=trio.Event)
    resumed_at: float = 0.0

    async def run(self) -> None:
        await self.peer.play(self.first)
        next_frame = trio.current_time()
        while not self._go_on.is_set():
            await self.peer.send_raw(encode_frame(0x10, bytes(320)))
            next_frame += FRAME_S
            await trio.sleep_until(next_frame)
        self.resumed_at = trio.current_time()
        await self.peer.play(self.then)
        self._done.set()

    async def resume(self) -> float:
        """Say ``then`` now; returns when it began, once it has been said."""
        self._go_on.set()
        with trio.fail_after(10 + len(self.then) / 2 / RATE_HZ):
            await self._done.wait()
        return self.resumed_at


async def call_in(
    node: Node, calls: trio.Nursery, first_s: float
) -> tuple[AsteriskPeer, Talker, CallHandle]:
    """A caller on ``node``: talks ``first_s``, silent until resumed, then talks 2 s more."""
    peer = await AsteriskPeer.connect(node.audiosocket_port)
    calls.start_soon(peer.read_until_closed)
    talker = Talker(peer, tone(CALLER_HZ, first_s), tone(CALLER_HZ, 2))
    calls.start_soon(talker.run)
    return peer, talker, await caller_call(node, peer)


def first_heard(peer: AsteriskPeer, freq_hz: float, start: float, end: float) -> float:
    """When ``freq_hz`` was first loud (-25 dBFS) in 100 ms of what the caller heard."""
    t = start
    while t < end:
        if tone_db(heard(peer, t, t + 0.1), freq_hz) > -25:
            return t
        t += 0.02
    return float("inf")


async def test_transfer_answered_bridges_the_caller_with_the_far_end(
    nursery: trio.Nursery, agent: str, tmp_path: Path
) -> None:
    async with sipp_uas(tmp_path, rtp_echo=True) as uas:
        node = await start_node(nursery, agent, uas.port)
        async with trio.open_nursery() as calls:
            # The caller talks, is silent (the agent says its announcement, falls quiet: the
            # transfer goes ahead) until the far end answered, then talks.
            peer, talker, call = await call_in(node, calls, 1.5)
            await trio.sleep(1.4)
            outcome, before, answered = await transfer(call)
            assert (outcome.status, outcome.detail) == ("answered", "+15550002")
            talked = await talker.resume()
            await peer.close()  # the caller hangs up: the far end gets a BYE
            with trio.fail_after(10):
                while len(node.hooks.hungup) < 2:
                    await trio.sleep(0.05)
    run = uas.result()
    assert run.returncode == 0, run.messages[-2000:] + run.errors
    assert "INVITE sip:+15550002@127.0.0.1" in run.messages and "BYE sip:" in run.messages
    with_agent = heard(peer, before - 0.8, before)
    assert tone_db(with_agent, AGENT_HZ) > -14 and tone_db(with_agent, CALLER_HZ) < -50
    # Told before it moved: the announcement played out, whole, before the far end answered.
    said = heard(peer, before, answered)
    assert tone_db(said, SAID_HZ) > -16, "the caller hears the agent's announcement"
    far_end = heard(peer, talked + 0.3, talked + 1.8)
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
        async with trio.open_nursery() as calls:
            peer, talker, call = await call_in(node, calls, 1.0)
            await trio.sleep(0.9)
            outcome, asked, failed = await transfer(call)
            assert outcome.status == "failed" and "486" in outcome.detail, outcome
            assert call.bridge_id is None
            talked = await talker.resume()
            await peer.close()
    # The announcement first, then ringback until the far end says it is busy.
    announced = first_heard(peer, SAID_HZ, asked, failed)
    ringing = first_heard(peer, 440, asked, failed)
    assert asked <= announced < ringing < failed, (asked, announced, ringing, failed)
    ringback = heard(peer, ringing, failed - 0.1)
    assert tone_db(ringback, 440) > -30 and tone_db(ringback, 480) > -30
    again = heard(peer, talked + 0.3, talked + 1.1)
    assert tone_db(again, AGENT_HZ) > -14, "the caller is back with its agent"
    assert uas.result().returncode == 0


async def test_the_agents_own_sentence_is_heard_before_ringback(
    nursery: trio.Nursery, slow_agent: str, tmp_path: Path
) -> None:
    """No announcement (the agent says its own sentence): the sentence, still in its TTS when
    the transfer starts, is waited for and heard before the caller moves."""
    async with sipp_uas(tmp_path, "uas_busy.xml") as uas:  # rings 0.5 s, then busy
        node = await start_node(nursery, slow_agent, uas.port)
        async with trio.open_nursery() as calls:
            peer, talker, call = await call_in(node, calls, 1.0)
            await trio.sleep(0.9)
            call.say("Sure, let me put you through.")  # said with the tool call, as an LLM does
            outcome, asked, failed = await transfer(call, TransferOptions(announcement=""))
            assert outcome.status == "failed", outcome
            await talker.resume()
            await peer.close()
    said = first_heard(peer, SAID_HZ, asked, failed)
    ringing = first_heard(peer, 440, asked, failed)
    assert asked + 0.9 < said < ringing < failed, (asked, said, ringing, failed)
