"""Real calls in a bridge: AudioSocket callers (Asterisk-like peers) move from their agent (the
echo agent) into a mixing bridge, hear each other and not themselves, and go back."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import trio

from ai_pipeline.link import AgentLink, LinkClosed
from media.bridge import Bridge
from media.hooks import AgentAssignment, CallHandle, LegCannotDo
from proto.messages import Audio, CallStart, Hangup, LinkFrame
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import Media, agent_in_thread, start_media, tone
from tests.media.tones import AGENT_HZ, tone_agent, tone_db

LEG_RATE_HZ = 8000
TONES_HZ = (350.0, 1250.0, 1700.0)  # apart from each other and from the entry/exit tones
LEVEL = 0.3  # of full scale, each
# Against the agent's 600 Hz, which comes in 20 ms pieces (sidebands every 50 Hz): off that grid.
AGENT_TEST_HZ = (437.0, 1311.0)


def heard(peer: AsteriskPeer, start: float, end: float) -> bytes:
    return b"".join(r.payload for r in peer.audio_frames() if start <= r.t < end)


async def handle_of(media: Media, peer: AsteriskPeer) -> CallHandle:
    with trio.fail_after(5):
        while True:
            for info in media.hooks.created:
                handle = media.env.registry.get(info.call_id)
                if info.leg_ref == str(peer.call_uuid) and handle is not None:
                    return handle
            await trio.sleep(0.02)


async def test_three_callers_hear_each_other_not_themselves_and_go_back(
    media_echo: Media,
) -> None:
    bridge = Bridge("conf-1")  # entry/exit tones on, as for a conference
    peers = [await AsteriskPeer.connect(media_echo.port) for _ in TONES_HZ]
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        for peer, freq in zip(peers, TONES_HZ, strict=True):
            nursery.start_soon(peer.read_until_closed)
            nursery.start_soon(peer.play, tone(freq, 5.0, level=LEVEL))
        calls = [await handle_of(media_echo, p) for p in peers]
        await trio.sleep(0.5)
        echoed_at = trio.current_time()  # before the bridge, each hears its own echo
        await trio.sleep(0.5)
        for call in calls:
            call.join_bridge(bridge)
        joined_at = trio.current_time()
        assert [c.bridge_id for c in calls] == ["conf-1"] * 3
        await trio.sleep(1.5)
        calls[0].leave_bridge("agent")
        left_at = trio.current_time()
        await trio.sleep(1.2)
        for peer in peers:
            await peer.close()
        bridge.close()
    window = (joined_at + 0.5, joined_at + 1.5)  # after the entry tones
    for i, peer in enumerate(peers):
        before = heard(peer, echoed_at, echoed_at + 0.5)
        assert tone_db(before, TONES_HZ[i]) > -14  # the echo agent: its own voice back
        during = heard(peer, *window)
        assert len(during) >= 0.9 * 2 * LEG_RATE_HZ  # a frame every 20 ms
        own = tone_db(during, TONES_HZ[i])
        for j, freq in enumerate(TONES_HZ):
            if j != i:  # each other caller at the level it sent (-10.5 dBFS), within 1 dB
                assert abs(tone_db(during, freq) - 20 * np.log10(LEVEL)) < 1.0, (i, j)
        assert own < 20 * np.log10(LEVEL) - 50, (i, own)  # itself: not at all
    # p0 went back to its agent: it hears itself again, the others no longer hear it
    after = (left_at + 0.5, left_at + 1.1)
    assert tone_db(heard(peers[0], *after), TONES_HZ[0]) > -14
    assert tone_db(heard(peers[0], *after), TONES_HZ[1]) < -60
    assert tone_db(heard(peers[1], *after), TONES_HZ[0]) < -60
    assert tone_db(heard(peers[1], *after), TONES_HZ[2]) > -12


class RecordingEcho:
    """The echo agent, keeping each link's start and frames (an agent switch opens a second)."""

    def __init__(self) -> None:
        self.links: list[tuple[CallStart, list[LinkFrame]]] = []

    async def __call__(self, start: CallStart, link: AgentLink) -> None:
        frames: list[LinkFrame] = []
        self.links.append((start, frames))
        while True:
            frame = await link.recv()
            frames.append(frame)
            if isinstance(frame, Audio):
                # (The core may have said goodbye and closed: the Hangup is still to be read.)
                with contextlib.suppress(LinkClosed):
                    await link.send(frame)
            elif isinstance(frame, Hangup):
                return


async def test_switching_agents_opens_a_new_link_and_the_caller_goes_on(
    nursery: trio.Nursery,
) -> None:
    agent = RecordingEcho()
    with agent_in_thread(agent) as url:
        media = await start_media(nursery, url)
        peer = await AsteriskPeer.connect(media.port)
        async with trio.open_nursery() as calls:
            calls.start_soon(peer.read_until_closed)
            calls.start_soon(peer.play, tone(TONES_HZ[0], 3.0, level=LEVEL))
            call = await handle_of(media, peer)
            await trio.sleep(1.0)
            call.switch_agent(AgentAssignment("agent-b", "c1", {"greeting": "b"}))
            switched = trio.current_time()
            await trio.sleep(1.5)
            await peer.close()
        with trio.fail_after(5):
            await media.hooks.ended.wait()
    (first, first_frames), (second, second_frames) = agent.links
    assert (first.agent_id, second.agent_id) == ("test-agent", "agent-b")
    assert second.call_id == first.call_id and second.agent_config == {"greeting": "b"}
    assert isinstance(first_frames[-1], Hangup) and "another agent" in first_frames[-1].reason
    assert sum(isinstance(f, Audio) for f in second_frames) > 40  # the caller, to the new one
    after = heard(peer, switched + 0.3, switched + 1.3)  # the new agent's echo
    assert tone_db(after, TONES_HZ[0]) > -14
    assert [cause for _, cause, _ in media.hooks.hungup] == ["caller"]


async def test_an_agent_in_the_bridge_hears_the_others_and_all_hear_it(
    nursery: trio.Nursery,
) -> None:
    """Caller 0 brings its agent in as a participant, caller 1 parks its own. The agent (it
    answers what it hears with 600 Hz) hears the mix and is heard by both; when caller 0
    leaves, both it and its agent are gone from caller 1's ear."""
    with agent_in_thread(tone_agent) as url:
        media = await start_media(nursery, url)
        bridge = Bridge("with-agent", tones=False)
        peers = [await AsteriskPeer.connect(media.port) for _ in range(2)]
        async with trio.open_nursery() as calls:
            await calls.start(bridge.run)
            for peer, freq in zip(peers, AGENT_TEST_HZ, strict=True):
                calls.start_soon(peer.read_until_closed)
                calls.start_soon(peer.play, tone(freq, 4.0, level=LEVEL))
            a, b = [await handle_of(media, p) for p in peers]
            await trio.sleep(0.5)
            a.join_bridge(bridge, agent="participant")
            b.join_bridge(bridge)
            joined = trio.current_time()
            assert set(bridge.participants) == {a.call_id, f"agent-{a.call_id}", b.call_id}
            await trio.sleep(1.5)
            a.leave_bridge("agent")
            left = trio.current_time()
            assert bridge.participants == (b.call_id,)
            await trio.sleep(1.0)
            for peer in peers:
                await peer.close()
            bridge.close()
    during = [heard(p, joined + 0.5, joined + 1.3) for p in peers]
    for i, other in ((0, 1), (1, 0)):
        assert tone_db(during[i], AGENT_HZ) > -16, i  # the agent, heard by both
        assert tone_db(during[i], AGENT_TEST_HZ[other]) > -12, i  # the other caller
        assert tone_db(during[i], AGENT_TEST_HZ[i]) < -50, i  # never itself
    after = [heard(p, left + 0.4, left + 0.9) for p in peers]
    assert tone_db(after[1], AGENT_HZ) < -50 and tone_db(after[1], AGENT_TEST_HZ[0]) < -50
    assert tone_db(after[0], AGENT_HZ) > -16  # caller 0 with its agent again, by itself
    assert tone_db(after[0], AGENT_TEST_HZ[1]) < -50


async def test_a_call_still_connecting_its_agent_cannot_join_yet(nursery: trio.Nursery) -> None:
    """Its agent link would take the audio back once up: the join is refused, not lost."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def never_answers(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    nursery.start_soon(trio.serve_listeners, never_answers, listeners)
    media = await start_media(nursery, f"ws://127.0.0.1:{port}", agent_connect_timeout_s=2.0)
    peer = await AsteriskPeer.connect(media.port)
    call = await handle_of(media, peer)
    with pytest.raises(LegCannotDo, match="connecting"):
        call.join_bridge(Bridge("early"))
    with trio.fail_after(5):
        await media.hooks.ended.wait()
    await peer.close()
